"""Sources: one configured dataset -> records in the lit-distill schema.

A source names where its rows live (local json/jsonl/parquet/csv files, a directory, a glob, or a hub id
where a network exists) and how its columns map onto the record schema of docs/design.md:

    source, problem_id, candidate_id, teacher, messages, answer

Local files are read by :mod:`lit_distill.data.readers` (values keep their types, every error names the
file, the 1-based line and the field) and written once to datasets' cache (``Dataset.from_generator``, keyed
on the files' size and mtime), so later runs memory-map them and reuse the tokenisation cache. A row that
cannot be normalised is an error, never a silent drop.

Formats understood (detected from the column names, or mapped with ``fields``):

* ``messages``/``conversations``: turns as ``{role, content}`` or ShareGPT ``{from, value}`` (human/gpt/system);
* prompt/response columns (``question``/``problem``/``instruction``/``prompt`` and ``response``/``solution``/
  ``output``/``completion``); Alpaca's ``input`` is appended to its ``instruction``; TRL's conversational
  ``prompt``/``completion`` (lists of turns) are joined into one conversation;
* a list of responses (OpenR1-Math ``generations``) becomes one candidate per element (candidate id = index),
  with an optional aligned correctness list (``correctness_math_verify``) used as a filter or as quality;
* GSM8K: when the response column is the ``answer`` column (``"... #### 42"``), the reference answer is taken
  from its ``####``/``\\boxed{}``.

Rows must be single-turn: optional system turn, one user turn, then (training) one assistant turn.

Example (YAML)::

    - name: numina_r1
      path: data/r1/*.jsonl
      fields: {prompt: problem, response: solution}   # optional; detected from the columns otherwise
      problem_namespace: numina                        # share problem ids with other teachers' files
    - name: openr1
      path: data/openr1/*.parquet       # problem, generations [..], correctness_math_verify [..], answer
      correctness: filter               # or quality / ignore
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from lit_distill.data import checks, rows
from lit_distill.data.checks import check_problem_questions
from lit_distill.data.readers import EXTENSIONS, SourceError, column_names, iter_rows, unit
from lit_distill.data.rows import prompt_key
from lit_distill.eval.answers import extract_answer
from lit_distill.paths import resolve_path

__all__ = [
    "SourceConfig",
    "SourceError",
    "check_problem_questions",
    "check_source_names",
    "describe_source",
    "load_source",
    "prompt_key",
]
log = logging.getLogger(__name__)

# Column names tried, in order, when `fields` does not say where a schema field lives.
_DETECT = {
    "messages": ("messages", "conversations", "conversation"),
    "prompt": ("prompt", "question", "problem", "instruction", "query", "input"),
    "input": (),  # Alpaca's `input` is detected only next to an `instruction` prompt (see _mapping)
    "response": ("response", "generations", "solution", "completion", "output", "answer_cot"),
    "system": ("system",),
    "problem_id": ("problem_id",),
    "candidate_id": ("candidate_id",),
    "teacher": ("teacher",),
    "answer": ("answer", "final_answer", "reference_answer"),
    "correct": ("correctness_math_verify", "correctness", "correct", "is_correct"),
}
CORRECTNESS = ("filter", "quality", "ignore")
_VERSION = "2"  # bump when the records change, to invalidate datasets' cache


@dataclass
class SourceConfig:
    """One dataset of the pool.

    Args:
        name: Name of the source in the pool (used in logs, mixture weights and metric keys).
        path: A file, a directory, a glob, or a hub dataset id. ``demo://...`` names the embedded demo assets.
            A directory skips hidden folders (``.ipynb_checkpoints/``) and symlinked aliases of a file.
        format: ``json`` (also jsonl), ``parquet`` or ``csv``; inferred from the file extension if omitted.
        split: Split to read from a hub dataset or directory.
        fields: Map from schema field (messages, prompt, input, response, system, problem_id, candidate_id,
            teacher, answer, correct) to the column holding it. Unset fields are detected from common column
            names. ``response`` may be a list column (one candidate per element); ``correct`` a flag or a
            list of flags aligned with it.
        system_prompt: A constant system message to prepend when the rows carry none.
        problem_namespace: Problem ids are keyed ``namespace/problem_id``; defaults to the source name.
            Give several sources the same namespace when they hold different teachers' answers to the same
            problems, so LARK selects among all of them.
        require_response: Training sources need a non-empty assistant turn; evaluation sets do not.
        max_samples: Keep at most this many rows (>= 1), drawn with ``seed`` (after validation of all rows).
        seed: Seed for ``max_samples`` subsampling.
        correctness: Use of a per-candidate correctness column (``correct``, e.g. OpenR1's
            ``correctness_math_verify``): ``filter`` keeps the candidates not marked incorrect, ``quality``
            keeps all and records the flag in the ``correct`` column, ``ignore`` keeps all.
    """

    name: str
    path: str
    format: str | None = None
    split: str = "train"
    fields: dict[str, str] = field(default_factory=dict)
    system_prompt: str | None = None
    problem_namespace: str | None = None
    require_response: bool = True
    max_samples: int | None = None
    seed: int = 0
    correctness: str = "filter"

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise SourceError(
                f"source '{self.name}': max_samples must be >= 1, got {self.max_samples} (omit it to keep every row)"
            )
        if self.correctness not in CORRECTNESS:
            raise SourceError(
                f"source '{self.name}': correctness must be one of {CORRECTNESS}, got {self.correctness!r}"
            )


def _select_files(found: list[str], root: str, cfg: SourceConfig) -> list[str]:
    """Drop files in hidden folders (notebook checkpoints, .git) and second paths to the same file."""
    kept, real_paths, hidden, aliases = [], set(), 0, 0
    for f in found:
        rel = os.path.relpath(f, root)
        if any(part.startswith(".") or part == "__pycache__" for part in Path(rel).parts):
            hidden += 1
            continue
        real = os.path.realpath(f)
        if real in real_paths:
            aliases += 1
            continue
        real_paths.add(real)
        kept.append(f)
    if hidden or aliases:
        log.warning(
            "source %s: skipped %d file(s) in hidden folders and %d symlinked alias(es) under %s",
            cfg.name, hidden, aliases, root,
        )  # fmt: skip
    return kept


def _files(cfg: SourceConfig) -> list[str] | None:
    """Local files of a source in a stable order, or None when the path is a hub id."""
    path = resolve_path(cfg.path)
    if any(ch in path for ch in "*?["):
        prefix = path[: min(path.index(ch) for ch in "*?[" if ch in path)]
        root = prefix if prefix.endswith(os.sep) else os.path.dirname(prefix) or "."
        found = _select_files(sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f)), root, cfg)
        if not found:
            raise SourceError(f"source '{cfg.name}': no file matches '{path}'")
        return found
    p = Path(path)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*") if f.suffix in EXTENSIONS and f.is_file())
        found = _select_files(found, path, cfg)
        if not found:
            raise SourceError(f"source '{cfg.name}': directory '{path}' holds no json/jsonl/parquet/csv file")
        return found
    if p.is_file():
        return [str(p)]
    if path.startswith((".", "/", "~")) or p.suffix in EXTENSIONS:
        raise SourceError(f"source '{cfg.name}': file '{path}' does not exist")
    return None  # a hub id


def _builder(cfg: SourceConfig, file: str) -> str:
    if cfg.format:
        return "json" if cfg.format in ("json", "jsonl") else cfg.format
    try:
        return EXTENSIONS[Path(file).suffix]
    except KeyError:
        raise SourceError(
            f"source '{cfg.name}': cannot tell the format of '{file}'; set format: json|parquet|csv"
        ) from None


def _load_file(cfg: SourceConfig, file: str) -> list[dict]:
    """The raw rows of one file, in order, a row with a list of responses repeated once per response
    (holding that response and its entry of the aligned lists), so ``row`` in the records indexes this
    list and ``(file, row)`` identifies a candidate (``score lark`` and ``select lark`` key on it)."""
    try:
        fmt = _builder(cfg, file)
        m = _mapping(cfg, column_names(file, fmt), f"source '{cfg.name}', {file}")
        return [one for _, row in iter_rows(file, fmt) for one in _explode_raw(row, m, cfg)]
    except SourceError as e:
        msg = str(e)
        raise SourceError(msg if msg.startswith("source '") else f"source '{cfg.name}', {msg}") from None


def _explode_raw(row: dict, m: dict[str, str], cfg: SourceConfig) -> list[dict]:
    col = m.get("response")
    resp = row.get(col) if col and "messages" not in m and cfg.require_response else None
    if not isinstance(resp, list) or not resp or all(isinstance(t, dict) for t in resp):
        return [row]
    out = []
    for k, value in enumerate(resp):
        one = {**row, col: value}
        for key in ("correct", "teacher", "candidate_id"):
            aligned = row.get(m[key]) if key in m else None
            if isinstance(aligned, list) and len(aligned) == len(resp):
                one[m[key]] = aligned[k]
        out.append(one)
    return out


def _mapping(cfg: SourceConfig, columns: list[str], where: str) -> dict[str, str]:
    """Resolve which column holds each schema field."""
    unknown = set(cfg.fields) - set(_DETECT)
    if unknown:
        raise SourceError(f"source '{cfg.name}': unknown schema field(s) {sorted(unknown)} in `fields`")
    mapping = {}
    for key, candidates in _DETECT.items():
        if key in cfg.fields:
            if cfg.fields[key] not in columns:
                raise SourceError(
                    f"{where}: field '{key}' is mapped to column '{cfg.fields[key]}', which is not among "
                    f"the columns {columns}"
                )
            mapping[key] = cfg.fields[key]
        else:
            col = next((c for c in candidates if c in columns), None)
            if col is not None:
                mapping[key] = col
    if mapping.get("prompt") == "instruction" and "input" in columns and "input" not in mapping:
        mapping["input"] = "input"  # Alpaca: the input is part of the question
    if "messages" in mapping and "prompt" in cfg.fields:
        del mapping["messages"]  # an explicit prompt/response mapping wins over a detected messages column
    elif "messages" not in cfg.fields and mapping.get("response") == "generations" and "prompt" in mapping:
        mapping.pop("messages", None)  # OpenR1: `messages` repeats one of the generations; train on all of them
    if "messages" in mapping:
        for key in ("prompt", "response", "input"):
            if key not in cfg.fields:
                mapping.pop(key, None)
    elif "prompt" not in mapping:
        raise SourceError(
            f"{where}: no conversation found: need a 'messages' column or a prompt column "
            f"({'/'.join(_DETECT['prompt'])}); columns are {columns}. Map them with `fields`."
        )
    elif cfg.require_response and "response" not in mapping:
        if "answer" not in mapping:
            raise SourceError(
                f"{where}: no response column ({'/'.join(_DETECT['response'])}); columns are {columns}. "
                "Map it with `fields: {response: ...}`."
            )
        mapping["response"] = mapping["answer"]  # GSM8K: the worked solution is the answer column
    if "correct" in mapping and "response" not in mapping and "messages" not in mapping:
        del mapping["correct"]
    return mapping


def describe_mapping(mapping: dict[str, str], columns: list[str]) -> str:
    """One line: which column feeds which field, and which columns are ignored."""
    parts = [f"{k} <- {v}" for k, v in mapping.items() if not (k == "answer" and v == mapping.get("response"))]
    if mapping.get("answer") and mapping.get("answer") == mapping.get("response"):
        parts.append(f"answer <- the ####/\\boxed{{}} of {mapping['answer']}")
    ignored = [c for c in columns if c not in mapping.values()]
    return f"{', '.join(parts)}; ignored: {', '.join(ignored) if ignored else 'none'}"


def describe_source(cfg: SourceConfig) -> list[str]:
    """Per file (or hub id): the detected column mapping and the ignored columns."""
    files = _files(cfg)
    if files is None:
        hub = datasets.load_dataset(resolve_path(cfg.path), split=cfg.split)
        return [f"{cfg.path}: {describe_mapping(_mapping(cfg, hub.column_names, cfg.path), hub.column_names)}"]
    out = []
    for f in files:
        try:
            cols = column_names(f, _builder(cfg, f))
        except SourceError as e:
            raise SourceError(f"source '{cfg.name}', {e}") from None
        out.append(f"{f}: {describe_mapping(_mapping(cfg, cols, f'source {cfg.name!r}, {f}'), cols)}")
    return out


def _int_id(value: Any, where: str, fld: str, csv_text: bool) -> int:
    if csv_text and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # CSV cells are text
    if isinstance(value, bool) or not isinstance(value, int):
        raise SourceError(f"{where}: field '{fld}' must be an integer, got {value!r:.40}")
    return value


def _per_candidate(value: Any, n: int, exploded: bool, where: str, fld: str, resp: str) -> list:
    """A field given once per row, or (next to a list of responses) as a list aligned with it."""
    if not isinstance(value, list):
        return [value] * n
    if not exploded or len(value) != n:
        raise SourceError(
            f"{where}: field '{fld}' is a list of {len(value)}; it must be a single value, or a list aligned "
            f"with the {n} responses of '{resp}'"
        )
    return value


def _candidates(row: dict, m: dict[str, str], cfg: SourceConfig, where: str) -> tuple[list, str, bool]:
    """(list of conversations, the field they come from, whether a list of responses was exploded)."""
    get = row.get
    if "messages" in m:
        return [rows.turns(get(m["messages"]), where, m["messages"])], m["messages"], False
    raw_prompt = get(m["prompt"])
    if isinstance(raw_prompt, list):  # TRL conversational: the prompt is a list of turns
        prompt = rows.turns(raw_prompt, where, m["prompt"])
    else:
        user = rows.text(raw_prompt, where, m["prompt"])
        extra = rows.text(get(m["input"]), where, m["input"], optional=True) if "input" in m else None
        if extra and extra.strip():
            user = f"{user}\n\n{extra}"
        prompt = [{"role": "user", "content": user}]
        system = rows.text(get(m["system"]), where, m["system"], optional=True) if "system" in m else None
        if system:
            prompt.insert(0, {"role": "system", "content": system})
    if "response" not in m or not cfg.require_response:
        return [prompt], m["prompt"], False  # evaluation prompts: the model writes the answer
    fld, resp = m["response"], get(m["response"])
    if isinstance(resp, list) and resp and all(isinstance(t, dict) for t in resp):  # TRL completion turns
        return [prompt + rows.turns(resp, where, fld)], fld, False
    if isinstance(resp, list):  # candidate generations of one problem
        if not resp:
            raise SourceError(f"{where}: field '{fld}' is an empty list of responses")
        texts = [rows.text(r, where, f"{fld}[{k}]") for k, r in enumerate(resp)]
        return [[*prompt, {"role": "assistant", "content": t}] for t in texts], fld, True
    return [[*prompt, {"role": "assistant", "content": rows.text(resp, where, fld)}]], fld, False


def _row_records(row: dict, ridx: int, loc: int, *, cfg: SourceConfig, m: dict, file: str, fidx: int) -> list[dict]:
    where = f"source '{cfg.name}', {file}, {unit(file)} {loc}"
    convs, fld, exploded = _candidates(row, m, cfg, where)
    n, is_csv = len(convs), file.endswith(".csv")
    for msgs in convs:
        if cfg.system_prompt and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": cfg.system_prompt})
        rows.check_conversation(msgs, where, fld, cfg.require_response)
        if not cfg.require_response and msgs[-1]["role"] == "assistant":
            msgs.pop()  # evaluation prompts: the model writes the answer
    pid = prompt_key(convs[0])
    raw = row.get(m["problem_id"]) if "problem_id" in m else None
    if raw is not None:  # a row without one is identified by its question
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise SourceError(f"{where}: field '{m['problem_id']}' must be a string or an integer, got {raw!r:.40}")
        pid = str(raw)
    cids = [-1] * n  # assigned later, by order of appearance
    if exploded:
        cids = list(range(n))
    if "candidate_id" in m:
        vals = _per_candidate(row.get(m["candidate_id"]), n, exploded, where, m["candidate_id"], fld)
        cids = [-1 if v is None else _int_id(v, where, m["candidate_id"], is_csv) for v in vals]
    teachers = [""] * n
    if "teacher" in m:
        vals = _per_candidate(row.get(m["teacher"]), n, exploded, where, m["teacher"], fld)
        teachers = [rows.text(v, where, m["teacher"], optional=True) or "" for v in vals]
    flags = [-1] * n
    if "correct" in m and cfg.correctness != "ignore":
        vals = _per_candidate(row.get(m["correct"]), n, exploded, where, m["correct"], fld)
        flags = [rows.flag(v, where, m["correct"]) for v in vals]
    if "answer" in m and m["answer"] == m.get("response"):  # GSM8K: the answer is marked in the solution
        answers = [_marked(c[-1]["content"]) for c in convs]
    else:
        answer = rows.answer_text(row.get(m["answer"]), where, m["answer"]) if "answer" in m else ""
        answers = [answer] * n
    question = rows.question_hash(convs[0])
    return [
        {
            "source": cfg.name,
            "problem_id": f"{cfg.problem_namespace or cfg.name}/{pid}",
            "candidate_id": cids[k],
            "teacher": teachers[k],
            "messages": convs[k],
            "answer": answers[k],
            "row": ridx + k,
            "line": loc,
            "file": fidx,
            "generation": k if exploded else -1,
            "correct": flags[k],
            "question": question,
        }
        for k in range(n)
    ]


def _marked(solution: str) -> str:
    marked = "####" in solution or "\\boxed" in solution or "\\fbox" in solution
    return (extract_answer(solution) or "") if marked else ""


_FEATURES = datasets.Features(
    {
        "source": datasets.Value("string"),
        "problem_id": datasets.Value("string"),
        "candidate_id": datasets.Value("int64"),
        "teacher": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "answer": datasets.Value("string"),
        "row": datasets.Value("int64"),  # 0-based index of the raw row in its file (select lark reads it back)
        "line": datasets.Value("int64"),  # 1-based line (parquet, hub: row) for messages
        "file": datasets.Value("int32"),
        "generation": datasets.Value("int32"),  # index in a list of responses, -1 when not exploded
        "correct": datasets.Value("int8"),  # per-candidate correctness from the data: 1, 0, -1 unknown
        "question": datasets.Value("string"),  # hash of the user turns, to catch clashing problem ids
    }
)


def _generate(cfg: SourceConfig, files: tuple[str, ...], hub: bool, stamp: tuple, v: str):
    """Records of every file of a source (runs once; datasets caches the result under the arguments)."""
    del stamp, v  # only part of the cache key
    for fidx, file in enumerate(files):
        if hub:
            part = datasets.load_dataset(file, split=cfg.split)
            columns, rows_of = part.column_names, ((i, r) for i, r in enumerate(part, 1))
        else:
            fmt = _builder(cfg, file)
            columns, rows_of = column_names(file, fmt), iter_rows(file, fmt)
        m = _mapping(cfg, columns, f"source '{cfg.name}', {file}")
        ridx = 0  # index into _load_file's list: one entry per candidate of an exploded row
        for loc, row in rows_of:
            records = _row_records(row, ridx, loc, cfg=cfg, m=m, file=file, fidx=fidx)
            ridx += len(records)
            yield from records


def _source_error(e: BaseException) -> SourceError | None:
    while e is not None:
        if isinstance(e, SourceError):
            return e
        e = e.__cause__ or e.__context__
    return None


def _stamp(files: list[str], hub: bool) -> tuple:
    """What invalidates the cached records: each file's size, modification time and inode."""
    if hub:
        return tuple(files)
    return tuple((f, (st := os.stat(f)).st_size, st.st_mtime_ns, st.st_ino) for f in files)


def load_source(cfg: SourceConfig, num_proc: int | None = None) -> tuple[datasets.Dataset, list[str]]:
    """Load and validate one source.

    Returns:
        The records (one row per trajectory, schema columns plus ``row``/``line``/``file`` provenance,
        ``generation``, ``correct`` and ``question``) and the list of files they came from (``file`` indexes
        it; a hub source has one pseudo-file, its id).
    """
    del num_proc  # rows are validated in one pass while being written to the cache
    if not cfg.name or "/" in cfg.name:
        raise SourceError(f"source name {cfg.name!r} must be non-empty and contain no '/'")
    files = _files(cfg)
    hub = files is None
    if hub:
        files = [resolve_path(cfg.path)]
    try:
        ds = datasets.Dataset.from_generator(
            _generate,
            features=_FEATURES,
            # tuples, not lists: datasets would shard list arguments between generator calls
            gen_kwargs={"cfg": cfg, "files": tuple(files), "hub": hub, "stamp": _stamp(files, hub), "v": _VERSION},
        )
    except Exception as e:  # datasets wraps what the generator raises
        cause = _source_error(e)
        if cause is not None:
            msg = str(cause)
            raise SourceError(msg if msg.startswith("source '") else f"source '{cfg.name}', {msg}") from None
        if hub:
            raise SourceError(f"source '{cfg.name}': cannot load '{files[0]}' (split {cfg.split}): {e}") from e
        raise
    ds = checks.assign_candidate_ids(ds)
    checks.check_unique_candidates(ds, files, cfg.name)
    check_problem_questions([(ds, files)], f"source '{cfg.name}'")
    if cfg.correctness == "filter":
        ds = checks.drop_incorrect(ds, cfg.name)
    if cfg.max_samples is not None and cfg.max_samples < len(ds):
        ds = checks.subsample_problems(ds, cfg.max_samples, cfg.seed)
    return ds, files


def check_source_names(names: list[str], known: list[str], what: str) -> None:
    """Raise a clear error when a config refers to a source that is not in the pool."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SourceError(f"{what} names source(s) {unknown} that are not in the pool {known}")
