"""Dagster + dbt definitions (dagster-dbt over the jaffle project) for the floe Dagster e2e tests.

The dbt project directory comes from ``DAGSTER_APP_DBT_PROJECT_DIR`` (tests point it at a temp copy of
``tests/projects/jaffle`` in which ``dbt parse`` already wrote ``target/manifest.json``); the DuckDB file
from ``JAFFLE_DUCKDB_PATH`` (see the jaffle ``profiles.yml``).

Jobs:
- ``dbt_job``: ``@dbt_assets`` over every jaffle node; one step runs ``dbt build`` as a subprocess
  through ``DbtCliResource`` (exactly as dagster-dbt users do).
- ``dbt_subprocess_job``: one plain ``@asset`` that runs ``dbt build`` with ``subprocess.run``.

The jaffle build deliberately has one failing data test; both assets tolerate it so the runs succeed.
"""

import os
import subprocess
from pathlib import Path

from dagster import AssetExecutionContext, Definitions, MaterializeResult, asset, define_asset_job
from dagster_dbt import DbtCliResource, dbt_assets

PROJECT_DIR = Path(
    os.environ.get("DAGSTER_APP_DBT_PROJECT_DIR", Path(__file__).resolve().parents[1] / "jaffle")
).resolve()
MANIFEST = PROJECT_DIR / "target" / "manifest.json"


@dbt_assets(manifest=MANIFEST)
def jaffle_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource):  # type: ignore[no-untyped-def]
    """Every jaffle model, seed and snapshot as a Dagster asset, built by one ``dbt build``."""
    yield from dbt.cli(["build"], context=context, raise_on_error=False).stream()


@asset
def dbt_build_subprocess(context: AssetExecutionContext) -> MaterializeResult:
    """A plain asset that shells out to ``dbt build`` itself."""
    done = subprocess.run(
        ["dbt", "build", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    context.log.info("dbt build exited %s", done.returncode)
    return MaterializeResult(metadata={"dbt_returncode": done.returncode})


dbt_job = define_asset_job("dbt_job", selection=[jaffle_dbt_assets])
dbt_subprocess_job = define_asset_job("dbt_subprocess_job", selection=[dbt_build_subprocess])

defs = Definitions(
    assets=[jaffle_dbt_assets, dbt_build_subprocess],
    jobs=[dbt_job, dbt_subprocess_job],
    resources={"dbt": DbtCliResource(project_dir=str(PROJECT_DIR), profiles_dir=str(PROJECT_DIR))},
)
