"""The prepared-model cache of facebench's own trained instruments (SynthCLIP, the recognizer).

A prepared model lives in ``cache_dir()/<folder>/<config hash>/``::

    checkpoint.pt    final weights {"state_dict", "meta"} (loaded with weights_only=True)
    checkpoint.pt.sha256  its digest: a checkpoint that no longer matches it (or, from
                     before digests were kept, does not load) is damaged -- preparing
                     moves it aside (checkpoint.pt.damaged) and trains again; a run
                     with --no-prepare stops in one line naming it and the command
    quality.json     held-out quality figures
    train_state.pt   the last periodic checkpoint while training (resume)
    .lock            held while one process prepares it

The project's own trained weights of the default configs ship inside the package
(:mod:`facebench.metrics.instruments.shipped`): a run uses them and trains nothing.
A model trained here (``facebench prepare NAME --retrain``, or a config with no
shipped weights) lives in the cache; a shipped config's cached model is used only
when a spec asks for its digest (``NAME@DIGEST``).

Its label, ``<prefix>:<config hash>@<weights digest>``, is read from the
checkpoint without building the model (as the leaderboard's ``backend_*``
columns name it). :class:`PreparedInstrument` puts one such model behind the
instrument interface of :data:`facebench.registry.INSTRUMENTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from facebench.method import Progress, no_progress
from facebench.metrics.instruments.shipped import load_shipped, manifest, rounded, shipped_file
from facebench.paths import (
    atomic_file,
    cache_damage,
    cache_dir,
    file_lock,
    move_aside,
    write_digest,
)
from facebench.threads import env_threads
from facebench.weights import (
    UNREADABLE,
    MissingWeightsError,
    WeightInfo,
    backend_label,
    checkpoint_digest,
    state_digest,
)

__all__ = [
    "CHECKPOINT",
    "QUALITY",
    "TRAIN_STATE",
    "HashedConfig",
    "PreparedInstrument",
    "PreparedModel",
    "TrainResult",
    "prepare_lock",
    "timings",
    "train_threads",
    "write_text",
]

CHECKPOINT = "checkpoint.pt"
QUALITY = "quality.json"
TRAIN_STATE = "train_state.pt"


def train_threads() -> AbstractContextManager[None]:
    """Run the block with ``$FACEBENCH_TRAIN_THREADS`` torch threads (default 0 = torch's own).

    Uncontended, torch's default (one thread per core) is fastest. When several jobs
    share the cores, ``FACEBENCH_TRAIN_THREADS=1`` avoids OpenMP barrier waits (two
    threads under contention cost 2-5x the CPU time per step of one), as SynthFace
    rendering found too (:func:`facebench.datasets.synthhead.render_threads`).
    """
    return env_threads("FACEBENCH_TRAIN_THREADS", 0)


@dataclass
class TrainResult:
    """What an instrument's training returns: the model in eval mode, the per-step losses
    (resumed ones included), the steps done, the step it resumed from, and the wall and
    CPU seconds of all its runs."""

    model: Any
    losses: list[float]
    steps: int
    seconds: float
    resumed_from: int
    cpu_seconds: float = 0.0


def timings(result: TrainResult, data_seconds: float) -> dict[str, float]:
    """``train_seconds``, ``train_cpu_seconds`` and ``data_seconds`` rounded to 0.1 s, as the
    checkpoint's meta and ``quality.json`` record them."""
    return {
        "train_seconds": round(result.seconds, 1),
        "train_cpu_seconds": round(result.cpu_seconds, 1),
        "data_seconds": round(data_seconds, 1),
    }


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (readers see the old file or the whole new one)."""
    with atomic_file(path, "w") as fh:
        fh.write(text)


@contextmanager
def prepare_lock(directory: Path, what: str, progress: Progress = no_progress) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (a ``.lock`` file) while preparing a model there.

    A second process preparing the same model waits (saying so through
    ``progress``) instead of training the same checkpoint concurrently.
    """

    def waiting() -> None:
        progress(f"waiting for another process preparing {what}", 0, 1)

    with file_lock(directory / ".lock", waiting):
        yield


class HashedConfig(Protocol):
    """A training config: its hash names the cache directory of the model it trains."""

    def hash(self) -> str: ...


@dataclass(frozen=True)
class PreparedModel:
    """Where a trained instrument's configs are cached and how its weights are labelled.

    ``folder``: the cache sub-folder; ``prefix``: the backend name before the config
    hash; ``what``: the model in messages ("SynthCLIP", "the expression recognizer");
    ``default``: the config its methods take when given none. Each method takes a config
    or its hash.
    """

    folder: str
    prefix: str
    what: str
    default: HashedConfig | None = field(default=None, compare=False)

    def config_hash(self, config: HashedConfig | str | None = None) -> str:
        """The hash of ``config`` (a hash as given; None: the default config's)."""
        if config is None:
            if self.default is None:
                raise ValueError(f"{self.what}: no config given and no default")
            config = self.default
        return config if isinstance(config, str) else config.hash()

    def directory(self, config: HashedConfig | str | None = None) -> Path:
        """The cache directory of ``config`` (exists once prepared or in progress)."""
        return cache_dir() / self.folder / self.config_hash(config)

    def shipped(self, config: HashedConfig | str | None = None) -> Path | None:
        """The package's shipped weights of ``config``, or None when none ship."""
        return shipped_file(self.folder, self.config_hash(config))

    def cached(self, config: HashedConfig | str | None = None) -> Path | None:
        """The checkpoint of ``config`` trained on this machine, or None when it has not been
        trained; :class:`MissingWeightsError` (naming the file and how to rebuild it) when
        damaged."""
        path = self.directory(config) / CHECKPOINT
        if not path.is_file():
            return None
        why = self.damage(path)
        if why:
            raise MissingWeightsError(
                f"{path}: {self.what}'s checkpoint is damaged ({why}); "
                f"run `facebench prepare {self.folder} --retrain` to rebuild it"
            )
        return path

    def checkpoint(self, config: HashedConfig | str | None = None, digest: str = "") -> Path | None:
        """The weights a run uses for ``config``: the shipped file, else the cached one (None
        when neither exists). With ``digest``, whichever of the two has that weights digest
        (:class:`MissingWeightsError` listing both when neither has)."""
        shipped = self.shipped(config)
        if not digest:
            return shipped or self.cached(config)
        found = {}
        for path in (shipped, self.cached(config)):
            if path is not None:
                found[self.digest(path)] = path
        if digest not in found:
            have = ", ".join(f"{d} ({p})" for d, p in found.items()) or "none"
            raise MissingWeightsError(
                f"no {self.what} {self.name(config)}@{digest}: the weights of that config "
                f"here are {have}; `facebench prepare {self.folder} --retrain` trains one"
            )
        return found[digest]

    @staticmethod
    def damage(path: Path) -> str | None:
        """Why the checkpoint at ``path`` is damaged, or None (:func:`cache_damage`)."""
        return cache_damage(path, PreparedModel.load)

    def name(self, config: HashedConfig | str | None = None) -> str:
        """The backend name of ``config`` (its label is this ``@DIGEST``)."""
        return f"{self.prefix}:{self.config_hash(config)}"

    @staticmethod
    def digest(path: Path) -> str:
        """The weights digest of the checkpoint at ``path`` (shipped or cached), without
        building the model; :data:`UNREADABLE` when it does not load."""
        return checkpoint_digest(path, PreparedModel.load)

    def label(self, config: HashedConfig | str | None = None, digest: str = "") -> str:
        """``NAME@DIGEST`` of the weights :meth:`checkpoint` picks for ``config``; "" when
        there are none, ``NAME@unreadable`` when damaged."""
        try:
            path = self.checkpoint(config, digest)
        except MissingWeightsError:
            return f"{self.name(config)}@{UNREADABLE}"
        return backend_label(self.name(config), self.digest(path)) if path else ""

    def shipped_digest_of(self, path: Path, config: HashedConfig | str | None = None) -> str:
        """The digest checkpoint ``path``'s weights would have once shipped (rounded to the
        shipped file's dtype): equal to the shipped digest when a retrain reproduced it;
        "" when ``config`` ships no weights."""
        shipped = self.shipped(config)
        if shipped is None:
            return ""
        state = self.load(path)["state_dict"]
        return state_digest(rounded(state, manifest(shipped)["dtype"]))

    def prepare(
        self,
        config_hash: str,
        force: bool,
        progress: Progress,
        build: Callable[[Path], Path],
    ) -> Path:
        """The shipped or cached weights of ``config_hash`` if they exist (and not ``force``),
        else ``build(directory)`` under :func:`prepare_lock` -- re-checking after the wait,
        since another process may have finished the same model meanwhile. ``force`` (a
        retrain) trains into the cache from scratch, removing the cached checkpoint, the
        resume state and the quality figures first; the shipped weights stay as they are."""
        out = self.directory(config_hash)
        ckpt = out / CHECKPOINT
        shipped = self.shipped(config_hash)
        if shipped is not None and not force:
            return shipped
        if ckpt.is_file() and not force and not self.damage(ckpt):
            return ckpt
        with prepare_lock(out, self.what, progress):
            if ckpt.is_file() and not force:
                why = self.damage(ckpt)
                if not why:
                    return ckpt
                aside = move_aside(ckpt)  # kept for inspection; trained again below
                progress(f"{ckpt} was damaged ({why}); moved to {aside.name}", 0, 1)
            if force:
                for name in (CHECKPOINT, CHECKPOINT + ".sha256", TRAIN_STATE, QUALITY):
                    (out / name).unlink(missing_ok=True)
            state = out / TRAIN_STATE
            if state.is_file() and cache_damage(state, self.load, record=False):
                move_aside(state)  # a resume state that does not load: start over
            out.mkdir(parents=True, exist_ok=True)
            path = build(out)
            write_digest(path)
            return path

    @staticmethod
    def load(path: Path) -> dict[str, Any]:
        """``{"state_dict", "meta"}`` of a checkpoint: shipped safetensors (checked against its
        manifest) or a cached ``checkpoint.pt`` (``weights_only=True``)."""
        import torch

        if Path(path).suffix == ".safetensors":
            return load_shipped(path)
        return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class PreparedInstrument:
    """A facebench-trained model as an instrument (see :data:`facebench.registry.INSTRUMENTS`).

    ``default_hash`` gives the config hash of the model a run uses (looked up at call
    time); ``train(progress=, force=)`` prepares it and returns its checkpoint path;
    ``title`` and ``how_to`` make its ``facebench weights`` row; ``pin`` says how a run asks
    for given weights (``{digest}`` filled in). ``ground_truth_only``: a run prepares it
    only for scenes with a SynthFace ground truth.
    """

    model: PreparedModel
    default_hash: Callable[[], str]
    train: Callable[..., Path]
    title: str
    how_to: str
    pin: str = ""
    ground_truth_only: bool = False
    optional: bool = False  # a failed preparation stops the run

    @property
    def first_use(self) -> str:
        """The progress message of a run that prepares it."""
        return f"preparing {self.model.what} (first run only)"

    def prepare(self, progress: Progress = no_progress, force: bool = False) -> Path:
        return self.train(progress=progress, force=force)

    def describe(self, path: Path) -> str:
        """What ``facebench prepare`` says of the weights at ``path`` it prepared: their label
        and quality figures and, for a model trained here while weights ship, whether it
        reproduced the shipped digest and how to use it."""
        chash = self.default_hash()
        what = self.model.what[0].upper() + self.model.what[1:]
        digest = self.model.digest(path)
        label = backend_label(self.model.name(chash), digest)
        shipped = self.model.shipped(chash)
        if path == shipped:
            return f"{what}: shipped weights {label} ({path}; quality in the .json beside it)"
        lines = [f"{what}: trained {label} ({path}; quality in {QUALITY} beside it)"]
        if shipped is not None:
            theirs = manifest(shipped)
            ours = self.model.shipped_digest_of(path, chash)
            same = "matches" if ours == theirs["digest"] else "differs from"
            lines.append(
                f"rounded to {theirs['dtype']} as shipped, this model is @{ours}: it {same} "
                f"the shipped {self.model.name(chash)}@{theirs['digest']}"
            )
            lines.append(
                "runs keep using the shipped weights; to use this one: "
                + self.pin.format(digest=digest, hash=chash)
            )
        return "\n".join(lines)

    def is_prepared(self) -> bool:
        try:
            return self.model.checkpoint(self.default_hash()) is not None
        except MissingWeightsError:  # damaged: preparing moves it aside and trains again
            return False

    def label(self) -> str | None:
        return self.model.label(self.default_hash()) or None

    def probe(self) -> list[WeightInfo]:
        chash = self.default_hash()
        try:
            path, where = self.model.checkpoint(chash), ""
        except MissingWeightsError as exc:
            path, where = None, str(exc)
        return [
            WeightInfo(
                name=self.title,
                present=path is not None,
                location=where or str(path or self.model.directory(chash)),
                how_to=self.how_to,
                label=self.model.label(chash),
            )
        ]
