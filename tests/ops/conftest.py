import pytest

from tests.conftest import require_program
from tinyexit.codegen.emit import KERNEL_VARIANTS


@pytest.fixture(scope="session")
def ops_workdir(tmp_path_factory):
    require_program("gcc", "apt-get install -y gcc make")
    return tmp_path_factory.mktemp("ops")


@pytest.fixture(scope="session", params=KERNEL_VARIANTS)
def kernels(request):
    """Every kernel variant meets the same checks."""
    return request.param
