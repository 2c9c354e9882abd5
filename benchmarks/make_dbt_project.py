"""Generates the dbt-duckdb project the dbt overhead benchmark builds: N layered models plus tests, all green.

    python benchmarks/make_dbt_project.py OUT_DIR [--models 24]

Layer 0 models generate rows with DuckDB's ``range()``; every later model joins two models of the layer
below, so the DAG has real dependencies and several nodes are runnable at once (``threads: 4``). Each model
gets ``unique`` + ``not_null`` tests on its key. The DuckDB file is ``$BENCH_DUCKDB_PATH`` or
``bench.duckdb`` in the working directory.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

WIDTH = 4  # models per layer


def make_project(out: Path, models: int = 24, rows: int = 2000) -> Path:
    """Write the project into ``out`` (created if needed) and return it."""
    if models < WIDTH * 2:
        raise ValueError(f"need at least {WIDTH * 2} models")
    out.mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    (out / "dbt_project.yml").write_text(
        textwrap.dedent(
            """\
            name: bench
            version: "1.0.0"
            config-version: 2
            profile: bench
            model-paths: ["models"]
            flags:
              send_anonymous_usage_stats: false
            models:
              bench:
                +materialized: table
            """
        )
    )
    (out / "profiles.yml").write_text(
        textwrap.dedent(
            """\
            bench:
              target: dev
              outputs:
                dev:
                  type: duckdb
                  path: "{{ env_var('BENCH_DUCKDB_PATH', 'bench.duckdb') }}"
                  threads: 4
            """
        )
    )
    names: list[str] = []
    schema = ["version: 2", "models:"]
    for i in range(models):
        layer, col = divmod(i, WIDTH)
        name = f"m{layer:02d}_{col}"
        if layer == 0:
            sql = f"select range as id, range * {col + 1} as value from range({rows})"
        else:
            left = names[(layer - 1) * WIDTH + col]
            right = names[(layer - 1) * WIDTH + (col + 1) % WIDTH]
            sql = (
                f"select l.id, l.value + coalesce(r.value, 0) as value\n"
                f"from {{{{ ref('{left}') }}}} l left join {{{{ ref('{right}') }}}} r on r.id = l.id"
            )
        if i % 3 == 1:
            sql = "{{ config(materialized='view') }}\n" + sql
        (out / "models" / f"{name}.sql").write_text(sql + "\n")
        names.append(name)
        schema += [f"  - name: {name}", "    columns:", "      - name: id", "        data_tests: [unique, not_null]"]
    (out / "models" / "schema.yml").write_text("\n".join(schema) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", type=int, default=24)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    print(make_project(args.out, args.models, args.rows))


if __name__ == "__main__":
    main()
