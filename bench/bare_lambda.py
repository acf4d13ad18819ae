"""The cold-start baseline: a bare FastAPI app with one constant route behind Mangum.

It is a module, as a user's handler would be: FastAPI reads an endpoint's source file for its
error context on the first request (`inspect.getsourcelines`, which tokenizes it), and a handler
given as `python -c` text has no file, which would spare the baseline a cost every deployed app
pays. bench/cold_start.py imports it in a fresh process per sample.
"""

from fastapi import FastAPI
from mangum import Mangum

bare = FastAPI()


@bare.get("/health")
async def health() -> dict[str, str]:
    """Constant answer."""
    return {"status": "ok"}


handler = Mangum(bare, lifespan="off")
