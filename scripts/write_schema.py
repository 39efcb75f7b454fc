"""Write the JSON Schema of gpuplan's answers and requests to docs/schema/ (generated from the
pydantic models in src/gpuplan/results.py and requests.py). tests/test_schema.py fails when the
committed files are not what this writes.

    python scripts/write_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path

from gpuplan.results import json_schemas

OUT = Path(__file__).resolve().parents[1] / "docs" / "schema"


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (OUT / name).write_text(render(schema))
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
