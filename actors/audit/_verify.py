"""Check an audit log (``corral audit verify``) and export one session's trail (``corral audit export``).

The verifier reads every day file in date order as one chain and stops at the first bad
record, saying which (file, line, seq) and what is wrong with it: ``edited``, ``removed``,
``inserted``, ``reordered``, ``truncated``, ``bad_signature`` or ``unsigned``. The hash chain
says *that* something is wrong; *what* is inferred from what is around the break (a gap in the
sequence numbers, a ``prev`` that matches an earlier or a later record, a signature that fails
while the next record's ``prev`` still matches).
"""

from __future__ import annotations

import collections
import os
from typing import IO, Iterator

import msgspec

from ._format import (
    AUDIT_CHAIN_BROKEN,
    AUDIT_NO_LOG,
    GENESIS,
    AuditError,
    Entry,
    digest,
    log_files,
    parse_entry,
    split_line,
)
from ._keys import Ed25519PublicKey, signature_valid

WINDOW = 256
"""How many records before and after a break are searched for the hash its ``prev`` names."""


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    file: str
    line: int
    seq: int | None
    what: str
    detail: str

    def __str__(self) -> str:
        seq = f" seq {self.seq}" if self.seq is not None else ""
        return f"{self.file}:{self.line}:{seq} {self.what}: {self.detail}"


class VerifyReport(msgspec.Struct, kw_only=True):
    ok: bool
    directory: str
    files: int = 0
    records: int = 0
    sessions: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str = GENESIS
    """The hash of the last good record (publish it elsewhere to anchor the log's end)."""
    signed: int = 0
    signatures_checked: bool = False
    problem: Problem | None = None

    def summary(self) -> str:
        if self.problem is not None:
            return f"FAIL {self.problem}"
        if self.signatures_checked:
            sigs = "every signature verified"
        elif self.signed:
            sigs = f"{self.signed} signed, signatures not checked (give --key)"
        else:
            sigs = "unsigned"
        seqs = f"seq {self.first_seq}..{self.last_seq}, " if self.records else ""
        return (f"ok: {self.records} records, {self.files} files, {self.sessions} sessions, {seqs}"
                f"head {self.head}, {sigs}")


class _Rec(msgspec.Struct, kw_only=True):
    file: str
    line: int
    raw: bytes
    torn: bool
    canonical: bytes = b""
    sig: bytes | None = None
    entry: Entry | None = None
    error: str = ""
    digest: str = ""


def _scan(files: list[str]) -> Iterator[_Rec]:
    for path in files:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                torn = not raw.endswith(b"\n")  # only the file's last line can lack its newline
                yield _parse(_Rec(file=name, line=n, raw=raw if torn else raw[:-1], torn=torn))


def _parse(rec: _Rec) -> _Rec:
    rec.canonical, rec.sig = split_line(rec.raw)
    rec.digest = digest(rec.canonical)
    try:
        rec.entry = parse_entry(rec.canonical)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        rec.error = str(exc) if rec.raw else "an empty line"
    return rec


class _Lookahead:
    def __init__(self, items: Iterator[_Rec]) -> None:
        self._items = items
        self._ahead: collections.deque[_Rec] = collections.deque()

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> _Rec:
        return self._ahead.popleft() if self._ahead else next(self._items)

    def peek(self, n: int) -> list[_Rec]:
        while len(self._ahead) < n:
            try:
                self._ahead.append(next(self._items))
            except StopIteration:
                break
        return list(self._ahead)[:n]


def verify_log(directory: str, *, public_key: Ed25519PublicKey | None = None, anchor: str = GENESIS,
               expect_head: str | None = None) -> VerifyReport:
    """Check the whole chain of ``directory`` (and every signature, given the public key).

    ``anchor``: the ``prev`` the first record must carry (default the genesis value; the hash of
    the last record of deleted old files otherwise). ``expect_head``: a record hash published
    earlier that must be in the log (detects records cut off its end)."""
    files = log_files(directory)
    if not files:
        raise AuditError(AUDIT_NO_LOG, f"no audit files (audit-YYYY-MM-DD.jsonl) in {os.path.abspath(directory)}")
    report = VerifyReport(ok=False, directory=os.path.abspath(directory), files=len(files),
                          signatures_checked=public_key is not None, head=anchor)
    sessions: set[tuple[str, str]] = set()
    recent: collections.deque[_Rec] = collections.deque(maxlen=WINDOW)
    records = _Lookahead(_scan(files))
    head_seen = expect_head is None
    for rec in records:
        problem = _check(rec, recent[-1] if recent else None, recent, records, public_key, anchor)
        if problem is not None:
            report.problem = problem
            return report
        entry = rec.entry
        assert entry is not None
        if report.first_seq is None:
            report.first_seq = entry.seq
        report.last_seq = entry.seq
        report.records += 1
        report.signed += rec.sig is not None
        report.head = rec.digest
        sessions.add((entry.tenant, entry.session_id))
        head_seen = head_seen or rec.digest == expect_head
        recent.append(rec)
    report.sessions = len(sessions)
    if not head_seen:
        last = recent[-1] if recent else None
        report.problem = Problem(file=last.file if last else "", line=last.line if last else 0,
                                 seq=last.entry.seq if last and last.entry else None, what="truncated",
                                 detail=f"the published head {expect_head} is not in the log: records were "
                                        "removed from its end (or the log was rewritten)")
        return report
    report.ok = True
    return report


def _problem(at: _Rec, what: str, detail: str) -> Problem:
    return Problem(file=at.file, line=at.line, seq=at.entry.seq if at.entry else None, what=what, detail=detail)


def _check(rec: _Rec, prev: _Rec | None, recent: collections.deque[_Rec], records: _Lookahead,
           key: Ed25519PublicKey | None, anchor: str) -> Problem | None:
    """None if ``rec`` is sound where it stands, else what is wrong with it (or around it)."""
    if rec.torn:
        return _problem(rec, "truncated", "the file ends inside a record (no newline): the file was cut off")
    if rec.entry is None:
        return _problem(rec, "edited", f"not an audit record ({rec.error})")
    if key is not None:
        if rec.sig is None:
            return _problem(rec, "unsigned", "the record carries no signature")
        if not signature_valid(key, rec.sig, rec.canonical):
            after = records.peek(1)
            if after and after[0].entry is not None and after[0].entry.prev == rec.digest:
                return _problem(rec, "bad_signature", "the signature does not verify, but the record is intact (the "
                                "next record's prev matches it): the signature was altered or made with another key")
            if after:
                return _problem(rec, "edited", "the signature does not verify and the next record's prev does not "
                                "match: the record was changed after it was written")
            return _problem(rec, "bad_signature", "the last record's signature does not verify (edited, or signed "
                            "with another key)")
    expected = prev.digest if prev is not None else anchor
    if rec.entry.prev != expected:
        return _classify(rec, prev, recent, records, key, anchor)
    if prev is not None and prev.entry is not None and rec.entry.seq <= prev.entry.seq:
        # Chained, yet out of order: the chain was rebuilt from here on (by someone without the key).
        what = "inserted" if rec.entry.seq == prev.entry.seq else "reordered"
        return _problem(rec, what, f"seq {rec.entry.seq} comes after seq {prev.entry.seq}")
    return None


def _classify(rec: _Rec, prev: _Rec | None, recent: collections.deque[_Rec], records: _Lookahead,
              key: Ed25519PublicKey | None, anchor: str) -> Problem:
    """What a chain break at ``rec`` (its prev is not the previous record's hash) most likely is."""
    assert rec.entry is not None
    # Its prev names an earlier record (or the anchor): what lies between is not part of the chain.
    earlier = list(recent)[:-1]
    if prev is not None and rec.entry.prev == anchor and len(recent) < WINDOW:
        return _problem(recent[0], "inserted", f"not part of the chain: the record at {rec.file}:{rec.line} "
                        "follows the start of the log")
    for i, r in enumerate(earlier):
        if r.digest == rec.entry.prev:
            first = recent[i + 1]
            return _problem(first, "inserted", f"not part of the chain: the record at {rec.file}:{rec.line} "
                            f"follows {r.file}:{r.line}")
    after = records.peek(WINDOW)
    before_hash = prev.digest if prev is not None else anchor
    for r in after:
        if r.digest == rec.entry.prev:
            return _problem(rec, "reordered", f"it belongs after seq {r.entry.seq if r.entry else '?'} "
                            f"({r.file}:{r.line}): its prev is that record's hash")
    if after and after[0].entry is not None and after[0].entry.prev == before_hash:
        return _problem(rec, "inserted", "not part of the chain: the next record follows the one before it")
    if prev is not None and prev.entry is not None and rec.entry.seq <= prev.entry.seq:
        what = "inserted" if rec.entry.seq == prev.entry.seq else "reordered"
        return _problem(rec, what, f"seq {rec.entry.seq} comes after seq {prev.entry.seq} and its prev is not "
                        "the previous record's hash")
    if prev is None or prev.entry is None:
        start = "the genesis value; give --anchor HASH if old files were deleted on purpose" if anchor == GENESIS \
            else "the anchor"
        return _problem(rec, "removed", f"records before the first one are missing (its prev is not {start})")
    if rec.entry.seq > prev.entry.seq + 1:
        return _problem(rec, "removed", f"records between seq {prev.entry.seq} and {rec.entry.seq} are missing "
                        f"(its prev is not the hash of {prev.file}:{prev.line})")
    if key is not None:  # the previous record's signature held, so this record's prev was changed
        return _problem(rec, "edited", "its prev was changed (it is not the previous record's hash)")
    return _problem(prev, "edited", f"its hash does not match the prev of the next record ({rec.file}:{rec.line}): "
                    "the record was changed after it was written")


def export_session(directory: str, session_id: str, out: IO[bytes], *, tenant: str | None = None,
                   public_key: Ed25519PublicKey | None = None, verify: bool = True) -> int:
    """Write one session's records, as stored (each line keeps its prev and sig), ordered by seq.
    With ``verify`` the whole chain is checked first and a broken one raises AuditError."""
    files = log_files(directory)
    if not files:
        raise AuditError(AUDIT_NO_LOG, f"no audit files (audit-YYYY-MM-DD.jsonl) in {os.path.abspath(directory)}")
    if verify:
        report = verify_log(directory, public_key=public_key)
        if report.problem is not None:
            raise AuditError(AUDIT_CHAIN_BROKEN, f"the log does not verify: {report.problem} "
                             "(export with --no-verify to read it anyway)")
    found: list[tuple[int, bytes]] = []
    for rec in _scan(files):
        entry = rec.entry
        if entry is not None and entry.session_id == session_id and (tenant is None or entry.tenant == tenant):
            found.append((entry.seq, rec.raw))
    found.sort(key=lambda item: item[0])
    for _seq, raw in found:
        out.write(raw + b"\n")
    return len(found)
