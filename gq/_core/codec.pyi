from typing import Final, Iterable, final

from typing_extensions import Buffer

FORMAT_VERSION: Final[int]

@final
class JobRecord:
    id: str
    type: str
    @property
    def state(self) -> int: ...
    priority: int
    attempts: int
    max_attempts: int
    crashes: int
    seq: int
    ready_seq: int
    created_at: float
    updated_at: float
    run_at: float
    started_at: float
    finished_at: float
    timeout: float
    lifetime: float
    lease_deadline: float
    payload: bytes
    result: bytes
    error: bytes
    extra: bytes
    @property
    def depends_on(self) -> tuple[str, ...]: ...
    @depends_on.setter
    def depends_on(self, value: Iterable[str]) -> None: ...
    key: str
    lease_owner: str

    def __init__(
        self,
        id: str,
        type: str,
        payload: bytes,
        state: int,
        *,
        priority: int = 0,
        attempts: int = 0,
        max_attempts: int = 0,
        crashes: int = 0,
        seq: int = 0,
        ready_seq: int = 0,
        created_at: float = 0.0,
        updated_at: float = 0.0,
        run_at: float = 0.0,
        started_at: float = 0.0,
        finished_at: float = 0.0,
        timeout: float = -1.0,
        lifetime: float = -1.0,
        lease_deadline: float = 0.0,
        result: bytes = b"",
        error: bytes = b"",
        extra: bytes = b"",
        depends_on: Iterable[str] = (),
        key: str = "",
        lease_owner: str = "",
    ) -> None: ...
    def move_to(self, new_state: int) -> None: ...
    def encode(self) -> bytes: ...
    def copy(self) -> JobRecord: ...
    def __copy__(self) -> JobRecord: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

def decode_record(data: Buffer, job_id: str | None = None) -> JobRecord: ...
def record_format_version(data: Buffer) -> int: ...
def crc32c(data: Buffer, value: int = 0) -> int: ...
def _crc32c_impl() -> str: ...
def _crc32c_table(data: Buffer, value: int = 0) -> int: ...
