"""Dagster definitions the floe Dagster instrumentor tests run for real (unit: in process; e2e: CLI).

Jobs:
- ``assets_job``: raw_orders -> (order_stats multi-asset: order_count, order_total) -> order_report,
  default executor (multiprocess under ``dagster job execute``: every step in its own child process).
- ``assets_job_in_process``: the same assets with the in-process executor.
- ``assets_job_forkserver``: the same assets, multiprocess executor with the ``forkserver`` start method.
- ``failing_job``: ``broken_asset`` raises ValueError; ``after_broken`` (downstream) is skipped.
- ``conditional_job``: ``optional_asset`` yields nothing, so ``after_optional`` is skipped.
- ``regional_job``: ``regional_sales`` partitioned by region (run with tag ``dagster/partition``).

Run from the CLI (DAGSTER_HOME set to a temp dir), e.g.::

    dagster job execute -f tests/projects/dagster_app/definitions.py -j assets_job
"""

import os

from dagster import (
    AssetExecutionContext,
    AssetOut,
    Definitions,
    MaterializeResult,
    Output,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
    multi_asset,
)

ORDERS = [12.5, 30.0, 7.25, 19.0]


@asset
def raw_orders() -> list[float]:
    """A source asset: a handful of order amounts."""
    return list(ORDERS)


@multi_asset(outs={"order_count": AssetOut(), "order_total": AssetOut()})
def order_stats(raw_orders: list[float]):  # type: ignore[no-untyped-def]
    """Two assets materialized by one step."""
    yield Output(len(raw_orders), output_name="order_count")
    yield Output(sum(raw_orders), output_name="order_total")


@asset
def order_report(context: AssetExecutionContext, order_count: int, order_total: float) -> MaterializeResult:
    """Downstream of both multi-asset outputs; records the pid that ran it."""
    context.log.info("report built in pid %s", os.getpid())
    return MaterializeResult(metadata={"average": order_total / order_count, "pid": os.getpid()})


@asset
def broken_asset() -> int:
    """Always fails."""
    raise ValueError("broken_asset exploded on purpose")


@asset
def after_broken(broken_asset: int) -> int:
    """Never runs: its upstream fails, so Dagster skips it."""
    return broken_asset + 1


@asset(output_required=False)
def optional_asset():  # type: ignore[no-untyped-def]
    """Yields no output, so nothing downstream of it runs."""
    if os.environ.get("DAGSTER_APP_EMIT_OPTIONAL"):
        yield Output(1)


@asset
def after_optional(optional_asset: int) -> int:
    """Skipped by Dagster (STEP_SKIPPED) because its input was never produced."""
    return optional_asset


regions = StaticPartitionsDefinition(["eu", "us"])


@asset(partitions_def=regions)
def regional_sales(context: AssetExecutionContext) -> MaterializeResult:
    """A partitioned asset."""
    return MaterializeResult(metadata={"region": context.partition_key})


ASSETS = [raw_orders, order_stats, order_report]

assets_job = define_asset_job("assets_job", selection=ASSETS)
assets_job_in_process = define_asset_job(
    "assets_job_in_process", selection=ASSETS, executor_def=in_process_executor
)
assets_job_forkserver = define_asset_job(
    "assets_job_forkserver",
    selection=ASSETS,
    executor_def=multiprocess_executor.configured({"start_method": {"forkserver": {}}}),
)
failing_job = define_asset_job("failing_job", selection=[broken_asset, after_broken])
conditional_job = define_asset_job("conditional_job", selection=[optional_asset, after_optional])
regional_job = define_asset_job("regional_job", selection=[regional_sales])

defs = Definitions(
    assets=[*ASSETS, broken_asset, after_broken, optional_asset, after_optional, regional_sales],
    jobs=[assets_job, assets_job_in_process, assets_job_forkserver, failing_job, conditional_job, regional_job],
)
