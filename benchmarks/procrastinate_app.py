"""The procrastinate app the comparison benchmark drives; its worker processes import
it through `procrastinate --app=benchmarks.procrastinate_app.app`.

The database comes from $PROCRASTINATE_BENCH_URL. The pool holds up to 64
connections: psycopg_pool's default of 4 would starve 64 concurrent callers.
"""

import os

import procrastinate


def make_app(url: str, pool: int = 64) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=url, min_size=1, max_size=pool))

    @app.task(name="bench.noop")
    async def noop():
        return None
    return app


app = make_app(os.environ.get("PROCRASTINATE_BENCH_URL", ""))
