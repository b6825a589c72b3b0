"""Sources: one configured dataset -> records in the lit-distill schema.

A source names where its rows live (local json/jsonl/parquet/csv files, a directory, a glob, or a hub id
where a network exists) and how its columns map onto the record schema of docs/design.md:

    source, problem_id, candidate_id, teacher, messages, answer

Loading goes through ``datasets.load_dataset`` (caching, memory mapping) one file at a time, so that every
error names the file, the row and the field. A row that cannot be normalised is an error, never a silent
drop.

Example (YAML)::

    - name: numina_r1
      path: data/r1/*.jsonl
      fields: {prompt: problem, response: solution}   # optional; detected from the columns otherwise
      problem_namespace: numina                        # share problem ids with other teachers' files
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from lit_distill.paths import resolve_path

ROLES = ("system", "user", "assistant")
_EXTENSIONS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
# Column names tried, in order, when `fields` does not say where a schema field lives.
_DETECT = {
    "messages": ("messages", "conversations"),
    "prompt": ("prompt", "question", "problem", "instruction", "input"),
    "response": ("response", "solution", "completion", "output", "answer_cot"),
    "system": ("system",),
    "problem_id": ("problem_id",),
    "candidate_id": ("candidate_id",),
    "teacher": ("teacher",),
    "answer": ("answer", "final_answer", "reference_answer"),
}


class SourceError(ValueError):
    """A source cannot be loaded; the message names the source, file, row and field."""


@dataclass
class SourceConfig:
    """One dataset of the pool.

    Args:
        name: Name of the source in the pool (used in logs, mixture weights and metric keys).
        path: A file, a directory, a glob, or a hub dataset id. ``demo://...`` names the embedded demo assets.
        format: ``json`` (also jsonl), ``parquet`` or ``csv``; inferred from the file extension if omitted.
        split: Split to read from a hub dataset or directory.
        fields: Map from schema field (messages, prompt, response, system, problem_id, candidate_id, teacher,
            answer) to the column holding it. Unset fields are detected from common column names.
        system_prompt: A constant system message to prepend when the rows carry none.
        problem_namespace: Problem ids are keyed ``namespace/problem_id``; defaults to the source name.
            Give several sources the same namespace when they hold different teachers' answers to the same
            problems, so LARK selects among all of them.
        require_response: Training sources need a non-empty assistant turn; evaluation sets do not.
        max_samples: Keep at most this many rows, drawn with ``seed`` (after validation of all rows).
        seed: Seed for ``max_samples`` subsampling.
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


def _files(cfg: SourceConfig) -> list[str] | None:
    """Local files of a source in a stable order, or None when the path is a hub id."""
    path = resolve_path(cfg.path)
    if any(ch in path for ch in "*?["):
        found = sorted(glob.glob(path))
        if not found:
            raise SourceError(f"source '{cfg.name}': no file matches '{path}'")
        return found
    p = Path(path)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*") if f.suffix in _EXTENSIONS and f.is_file())
        if not found:
            raise SourceError(f"source '{cfg.name}': directory '{path}' holds no json/jsonl/parquet/csv file")
        return found
    if p.is_file():
        return [str(p)]
    if path.startswith((".", "/", "~")) or p.suffix in _EXTENSIONS:
        raise SourceError(f"source '{cfg.name}': file '{path}' does not exist")
    return None  # a hub id


def _builder(cfg: SourceConfig, file: str) -> str:
    if cfg.format:
        return "json" if cfg.format in ("json", "jsonl") else cfg.format
    try:
        return _EXTENSIONS[Path(file).suffix]
    except KeyError:
        raise SourceError(
            f"source '{cfg.name}': cannot tell the format of '{file}'; set format: json|parquet|csv"
        ) from None


def _locate_json_error(file: str) -> str:
    """Find the first malformed row of a JSON/JSONL file (datasets' own error does not say where)."""
    with open(file, encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            return f"line {e.lineno}, column {e.colno}: {e.msg}"
        return "the file is valid JSON, but its rows do not share one schema"
    row = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            return f"row {row} (line {lineno}): malformed JSON: {e.msg}"
        if not isinstance(obj, dict):
            return f"row {row} (line {lineno}): expected a JSON object, got {type(obj).__name__}"
        row += 1
    return "rows whose fields have inconsistent types"


def _load_file(cfg: SourceConfig, file: str) -> datasets.Dataset:
    builder = _builder(cfg, file)
    try:
        return datasets.load_dataset(builder, data_files=file, split="train")
    except Exception as e:  # datasets wraps parser errors in several exception types
        where = _locate_json_error(file) if builder == "json" else str(e).splitlines()[0]
        raise SourceError(f"source '{cfg.name}': cannot read {file}: {where}") from e


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
    if "messages" in mapping and "prompt" in cfg.fields:
        del mapping["messages"]  # an explicit prompt/response mapping wins over a detected messages column
    if "messages" in mapping:
        for key in ("prompt", "response"):
            if key not in cfg.fields:
                mapping.pop(key, None)
    elif "prompt" not in mapping:
        raise SourceError(
            f"{where}: no conversation found: need a 'messages' column or a prompt column "
            f"({'/'.join(_DETECT['prompt'])}); columns are {columns}. Map them with `fields`."
        )
    elif cfg.require_response and "response" not in mapping:
        raise SourceError(
            f"{where}: no response column ({'/'.join(_DETECT['response'])}); columns are {columns}. "
            "Map it with `fields: {response: ...}`."
        )
    if mapping.get("answer") == mapping.get("response"):
        mapping.pop("answer", None)
    return mapping


def _text(value: Any, where: str, fld: str, optional: bool = False) -> str | None:
    if value is None:
        if optional:
            return None
        raise SourceError(f"{where}: field '{fld}' is missing (null)")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SourceError(f"{where}: field '{fld}' must be a string, got {type(value).__name__}")
    return str(value)


def _messages(row: dict, m: dict[str, str], cfg: SourceConfig, where: str) -> list[dict[str, str]]:
    if "messages" in m:
        raw = row[m["messages"]]
        fld = m["messages"]
        if not isinstance(raw, list) or not raw:
            raise SourceError(f"{where}: field '{fld}' must be a non-empty list of {{role, content}} turns")
        msgs = []
        for i, turn in enumerate(raw):
            if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
                raise SourceError(f"{where}: field '{fld}[{i}]' must be an object with 'role' and 'content'")
            role = {"human": "user", "gpt": "assistant"}.get(turn["role"], turn["role"])
            if role not in ROLES:
                raise SourceError(f"{where}: field '{fld}[{i}].role' is '{turn['role']}', not one of {ROLES}")
            msgs.append({"role": role, "content": _text(turn["content"], where, f"{fld}[{i}].content")})
    else:
        msgs = []
        if "system" in m and row[m["system"]]:
            msgs.append({"role": "system", "content": _text(row[m["system"]], where, m["system"])})
        msgs.append({"role": "user", "content": _text(row[m["prompt"]], where, m["prompt"])})
        if "response" in m:
            response = _text(row[m["response"]], where, m["response"], optional=not cfg.require_response)
            if response is not None:
                msgs.append({"role": "assistant", "content": response})
        fld = m.get("response", m["prompt"])
    if cfg.system_prompt and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": cfg.system_prompt})
    if not any(t["role"] == "user" for t in msgs):
        raise SourceError(f"{where}: field '{fld}' has no user turn")
    if cfg.require_response:
        if msgs[-1]["role"] != "assistant":
            raise SourceError(f"{where}: field '{fld}' does not end with an assistant turn")
        if not msgs[-1]["content"].strip():
            raise SourceError(f"{where}: field '{fld}': the assistant turn is empty")
    elif msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]  # evaluation prompts: the model writes the answer
    return msgs


def prompt_key(messages: list[dict[str, str]]) -> str:
    """Default problem id: a hash of the non-assistant turns (same question = same problem)."""
    text = json.dumps([t for t in messages if t["role"] != "assistant"], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _normalise(row: dict, idx: int, *, cfg: SourceConfig, m: dict[str, str], file: str) -> dict:
    where = f"source '{cfg.name}', {file}, row {idx}"
    msgs = _messages(row, m, cfg, where)
    pid = _text(row[m["problem_id"]], where, m["problem_id"]) if "problem_id" in m else prompt_key(msgs)
    cid = row[m["candidate_id"]] if "candidate_id" in m else -1
    if isinstance(cid, bool) or not isinstance(cid, int):
        raise SourceError(f"{where}: field '{m['candidate_id']}' must be an integer, got {cid!r}")
    teacher = _text(row[m["teacher"]], where, m["teacher"], optional=True) if "teacher" in m else None
    answer = _text(row[m["answer"]], where, m["answer"], optional=True) if "answer" in m else None
    return {
        "source": cfg.name,
        "problem_id": f"{cfg.problem_namespace or cfg.name}/{pid}",
        "candidate_id": cid,
        "teacher": teacher or "",
        "messages": msgs,
        "answer": answer or "",
        "row": idx,
    }


_FEATURES = datasets.Features(
    {
        "source": datasets.Value("string"),
        "problem_id": datasets.Value("string"),
        "candidate_id": datasets.Value("int64"),
        "teacher": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "answer": datasets.Value("string"),
        "row": datasets.Value("int64"),
        "file": datasets.Value("int32"),
    }
)


def _assign_candidate_ids(ds: datasets.Dataset) -> datasets.Dataset:
    """Rows without a candidate id get their order of appearance within their problem."""
    cids = ds["candidate_id"]
    if min(cids, default=0) >= 0:
        return ds
    seen: dict[str, int] = {}
    out = []
    for pid, cid in zip(ds["problem_id"], cids, strict=True):
        n = seen.get(pid, 0)
        seen[pid] = n + 1
        out.append(n if cid < 0 else cid)
    return ds.remove_columns("candidate_id").add_column("candidate_id", out)


def load_source(cfg: SourceConfig, num_proc: int | None = None) -> tuple[datasets.Dataset, list[str]]:
    """Load and validate one source.

    Returns:
        The records (one row per trajectory, schema columns plus ``row`` and ``file`` provenance) and the
        list of files they came from (``file`` indexes it; a hub source has one pseudo-file, its id).
    """
    if not cfg.name or "/" in cfg.name:
        raise SourceError(f"source name {cfg.name!r} must be non-empty and contain no '/'")
    files = _files(cfg)
    if files is None:
        hub_id = resolve_path(cfg.path)
        try:
            parts = [datasets.load_dataset(hub_id, split=cfg.split)]
        except Exception as e:
            raise SourceError(f"source '{cfg.name}': cannot load '{hub_id}' (split {cfg.split}): {e}") from e
        files = [hub_id]
    else:
        parts = [_load_file(cfg, f) for f in files]
    normalised = []
    for i, (file, part) in enumerate(zip(files, parts, strict=True)):
        where = f"source '{cfg.name}', {file}"
        if len(part) == 0:
            raise SourceError(f"{where}: the file holds no rows")
        m = _mapping(cfg, part.column_names, where)
        out = part.map(
            _normalise,
            with_indices=True,
            fn_kwargs={"cfg": cfg, "m": m, "file": file},
            remove_columns=part.column_names,
            num_proc=num_proc if num_proc and len(part) > 10_000 else None,
            desc=f"validate {cfg.name}",
        )
        out = out.add_column("file", [i] * len(out)).cast(_FEATURES)
        normalised.append(out)
    ds = datasets.concatenate_datasets(normalised) if len(normalised) > 1 else normalised[0]
    ds = _assign_candidate_ids(ds)
    if cfg.max_samples is not None and cfg.max_samples < len(ds):
        ds = _subsample_problems(ds, cfg.max_samples, cfg.seed)
    return ds, files


def _subsample_problems(ds: datasets.Dataset, max_rows: int, seed: int) -> datasets.Dataset:
    """Whole problems in a seeded random order until ``max_rows`` would be exceeded (LARK needs every
    candidate of a problem, so candidates are never split)."""
    import numpy as np

    keys, inverse = np.unique(np.asarray(ds["problem_id"], dtype=object), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(keys))
    order = np.random.default_rng(seed).permutation(len(keys))
    keep = order[np.cumsum(sizes[order]) <= max_rows]
    rows = np.flatnonzero(np.isin(inverse, keep))
    return ds.select(rows).flatten_indices()


def check_source_names(names: list[str], known: list[str], what: str) -> None:
    """Raise a clear error when a config refers to a source that is not in the pool."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SourceError(f"{what} names source(s) {unknown} that are not in the pool {known}")
