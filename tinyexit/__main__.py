import sys

from tinyexit.cli import main

sys.exit(main())
