"""YAML files checked by a JSON schema (boards/, models/): read one, check it, and turn the most specific schema
error into one line naming the file, the key and the fix."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import jsonschema
import yaml

from tinyexit.errors import TinyexitError


def read_mapping(file: Path, error: type[TinyexitError], *, missing: str, not_mapping: str) -> dict:
    """The YAML mapping in `file`; `missing` (a whole message) when there is no such file, `not_mapping`
    (after "FILE: ") when it holds something else, a syntax error with its line and column."""
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise error(missing) from None
    except IsADirectoryError:
        raise error(f"{file} is a folder; give a .yaml file.") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise error(f"{file}: not valid YAML{at}: {getattr(e, 'problem', e)}. Fix the syntax.") from None
    if not isinstance(data, dict):
        raise error(f"{file}: {not_mapping}")
    return data


def where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def check(file: Path, data: dict, schema: dict, error: type[TinyexitError],
          message: Callable[[Path, jsonschema.ValidationError], str]) -> None:
    """Raise `error` with `message(file, err)` for the innermost schema error (plus a count of the others)."""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data),
                    key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        err = max(errors, key=lambda e: len(e.absolute_path))
        more = f" ({len(errors) - 1} more problem(s) in this file)" if len(errors) > 1 else ""
        raise error(message(file, err) + more)


def error_message(file: Path, err: jsonschema.ValidationError, *, schema_path: Path, example: str,
                  fields: str = "") -> str:
    """The usual cases: an unknown key (naming the allowed ones; `fields` says where they are documented), a
    missing key (`example` shows one), a value outside an enum, anything else with the schema's own words."""
    at = where(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        return (f"{file}: {at}: unknown key {', '.join(repr(e) for e in extra)}. "
                f"Allowed keys here: {', '.join(allowed)}. Fix the spelling or remove the key{fields}.")
    if err.validator == "required":
        return f"{file}: {at}: missing required key '{missing_key(err)}'. Add it (see {example})."
    if err.validator == "enum":
        return (f"{file}: {at}: {err.instance!r} is not one of {err.validator_value}. "
                f"Use one of these values.")
    return f"{file}: {at}: {err.message}. Fix this value (the schema is {schema_path})."


def missing_key(err: jsonschema.ValidationError) -> str:
    return err.message.split("'")[1] if "'" in err.message else err.message


def check_name(file: Path, data: dict, error: type[TinyexitError]) -> None:
    if data["name"] != file.stem:
        raise error(f"{file}: name is '{data['name']}' but the file is {file.name}. "
                    f"Make the name equal to the file name without .yaml.")
