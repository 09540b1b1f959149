def plan_rows(specs: list, unmet: list, first_seq: int, tag: str, now: float,
              listing_prefixes: dict, jobs: list, listing: list, ready: list, delayed: list,
              planned: dict, counts: dict) -> list[str]: ...

class JobSpec:
    id: str | None
    type: str
    payload: bytes
    priority: int
    run_at: float
    depends_on: tuple[str, ...]
    key: str
    max_attempts: int
    timeout: float
    lifetime: float
    def __init__(self, id: str | None, type: str, payload: bytes, priority: int, run_at: float,
                 depends_on: tuple[str, ...], key: str, max_attempts: int, timeout: float,
                 lifetime: float) -> None: ...

def fast_specs(jobs: list, known_types: dict, dumps, max_payload_bytes: int) -> list: ...

def plain_spec(job_type, payload, known_types: dict, dumps, max_payload_bytes: int) -> JobSpec | None: ...

def specs_bytes(specs: list, job_overhead: int) -> int: ...
def count_types(specs: list) -> dict[str, int]: ...
def all_plain(specs: list) -> bool: ...
def with_lifetime(specs: list) -> list[int]: ...
