"""Contract 1: the model interface every attribution method sees.

An adapter (a subclass of :class:`SequenceModel`) turns an input into an :class:`Example` and answers every
question a method has about its kind of model; methods never branch on the kind. What an adapter provides:

* :meth:`~SequenceModel.encode` → :class:`Example`: token ids *or* precomputed input vectors, character offsets
  where there is text, named groups of positions, the targets, and ``visibility[T, L]`` (which positions each target
  can see: the adapter's answer, stored on the example).
* :meth:`~SequenceModel.embed` → ``[1, L, D]`` input embeddings (differentiable inputs of gradient methods).
* :meth:`~SequenceModel.logits_many` → raw logits ``[b, T, V]`` at each target's reading position for several
  :class:`Part` s (rows of one or more examples) in one forward; everything else derives from it:
  :meth:`~SequenceModel.distributions` (log-softmax), :meth:`~SequenceModel.score` (the explained function) and
  :meth:`~SequenceModel.predictions`.
* :meth:`~SequenceModel.start_positions` (a rationale's start set), :meth:`~SequenceModel.attention_view` (which
  attention maps and rows explain a target), :meth:`~SequenceModel.row_cost` (what keep-rows cost in a forward),
  :meth:`~SequenceModel.rows_example` (the smallest example that serves rows up to a target).

``keep[B, L]`` (bool) says which positions are visible; the rule (what a dropped position means, where a target is
read, rows where nothing is visible on a side) is stated once in :mod:`seqexplain.models.keep`.
``embeds[B, L, D]`` replaces the input-embedding layer's output, so gradient methods differentiate ``score``
w.r.t. ``embeds``.

**What is explained** (:attr:`Example.objective`): ``score`` returns per target the objective ``"logprob"``
(default), ``"prob"``, ``"logit"`` or ``"contrast"`` (with a foil per target), defined in
:mod:`seqexplain.models.objective`.

The data types the interface passes around (:class:`Example`, :class:`Part`, :class:`AttentionSegment`) live in
:mod:`seqexplain.models.example`; helpers over the torch module (:func:`~seqexplain.models.module_state.eval_mode`,
:func:`~seqexplain.models.module_state.frozen_parameters`, :func:`~seqexplain.models.module_state.first_parameter`)
in :mod:`seqexplain.models.module_state`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch

from seqexplain.attribution import OBJECTIVES
from seqexplain.errors import InputError, UnsupportedError
from seqexplain.models import keep as keep_rule
from seqexplain.models.behaviour import verify_keep_mask, verify_vectors
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.module_state import first_parameter
from seqexplain.models.objective import objective_values
from seqexplain.models.vectors import cast_vectors, check_vectors

ModelKind = Literal["causal", "seq2seq", "classifier", "labeller"]


class SequenceModel(ABC):
    """Base of every adapter (see the module docstring for what it provides).

    ``autocast``: None (float32, the default) or ``torch.bfloat16`` / ``torch.float16``: every forward then runs
    (scores, and the attention views' forwards alike) under ``torch.autocast`` on the model's device (faster on
    GPUs, less exact: docs/methods.md gives the measured error against float32); distributions and scores are
    computed in float32 from the autocast logits.

    ``truncation_side``: which end of an input text a cut to fewer tokens removes: ``"right"`` (the end, the
    default) or ``"left"`` (the oldest tokens: a language model's prompt, whose targets continue it).

    ``model_warnings``: what is true of every explanation of this model (e.g. a head initialised at random by
    ``load_model(..., allow_new_head=True)``); each result carries them."""

    kind: str
    truncation_side: Literal["left", "right"] = "right"
    model: torch.nn.Module
    tokenizer: Any
    model_id: str
    autocast: torch.dtype | None = None
    model_warnings: tuple[str, ...] = ()
    #: the behavioural probes' state (:mod:`seqexplain.models.behaviour`): None/False until one has passed
    _keep_verified: bool | None = None
    _vectors_verified: bool = False

    # ------------------------------------------------------------------ abstract
    @abstractmethod
    def encode(self, text: Any, target: Any = None, **options: Any) -> Example:
        """The :class:`Example` of an input and its target (``None``: the model's own prediction)."""

    def encode_many(self, requests: Sequence[tuple[Any, Any]], **options: Any) -> list[Example]:
        """:meth:`encode` of each ``(text, target)``, in order, equal to one :meth:`encode` each. Adapters that can
        find several inputs' own predictions (``target=None``) in shared forwards override it (``explain_many``
        encodes a pack of items through it)."""
        return [self.encode(text, target, **options) for text, target in requests]

    @abstractmethod
    def embed(self, example: Example) -> torch.Tensor:
        """``[1, L, D]`` output of the input-embedding layer for the example's input axis."""

    def embed_many(self, examples: Sequence[Example]) -> list[torch.Tensor]:
        """:meth:`embed` of each example, in order (an adapter that can embed many in one call overrides it)."""
        return [self.embed(ex) for ex in examples]

    @abstractmethod
    def logits_many(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        """Per part, raw logits ``[b, T, V]`` at each target's reading position (``[b, 1, V]`` with
        ``rows_target``), all parts in as few forwards as the adapter can. ``keep`` is already normalised to
        ``[b, L]`` on the model's device and rule 4 of :mod:`seqexplain.models.keep` is already applied for parts
        that hold one target per row (:meth:`logits_many` receives no row needing a split)."""

    # ------------------------------------------------------------- kind questions
    def start_positions(self, example: Example, target: int) -> list[int]:
        """The positions a rationale of ``target`` always includes: by default the reading position with nothing
        dropped, ``p_i − 1`` (the predicting token)."""
        p = example.target_positions[target]
        if p is None:
            raise UnsupportedError(f"{self.model_id}: this adapter does not say where a rationale starts")
        return [int(p) - 1]

    def read_floor(self, example: Example) -> int:
        """First position of the targets' side of the input axis (rule 3 of :mod:`seqexplain.models.keep`)."""
        return 0

    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """Which attention maps and rows explain each target (:class:`AttentionSegment`)."""
        raise UnsupportedError(
            f"{self.model_id} ({type(self.model).__name__}) cannot return attention weights; "
            "use a gradient or perturbation method instead")

    def row_cost(self, example: Example, max_target: int, max_kept: int) -> int:
        """Tokens each row of a forward of keep-rows costs, when the forward's largest target index is
        ``max_target`` and its fullest row keeps ``max_kept`` positions (rows are padded alike, so a forward of
        ``n`` rows costs ``n × row_cost``). Default: every row runs the full input."""
        return example.length

    def rows_example(self, example: Example, max_target: int) -> Example:
        """The smallest example that evaluates rows of targets ``0..max_target`` (default: ``example``)."""
        return example

    def target_name(self, example: Example, token_id: int) -> str:
        """A readable name of a target id (a token, or a label name)."""
        tok = getattr(self, "tokenizer", None)
        if tok is not None and hasattr(tok, "convert_ids_to_tokens"):
            got = tok.convert_ids_to_tokens([int(token_id)])
            if got and got[0] is not None:
                return str(got[0])
        return str(token_id)

    def foil_ids(self, example: Example, foil: Any) -> tuple[torch.Tensor, list[str]]:
        """``[T]`` foil ids and their names for a contrastive objective (a text with one token per target, or a
        list of one token or id per target)."""
        raise UnsupportedError(f"{self.model_id}: this adapter does not take foils")

    def foil_warnings(self, example: Example, foil: Any, names: list[str]) -> list[str]:
        """What a result should say about how ``foil`` was read as the tokens ``names`` (none by default)."""
        return []

    def input_width(self) -> int | None:
        """Width ``D`` of the input vectors the model takes (None: not checked)."""
        return None

    def can_pad(self) -> bool:
        """Whether examples of different lengths can share a forward (padding is a dropped position)."""
        return True

    # ------------------------------------------------------------------ derived
    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (the CPU for a module without parameters)."""
        param = first_parameter(self.model)
        return torch.device("cpu") if param is None else param.device

    def default_token_budget(self) -> int:
        """Tokens per forward when methods batch rows: 4,096 on a CPU (fastest measured; larger batches make
        element-wise layers memory-bound), 65,536 on an accelerator."""
        return 4096 if self.device.type == "cpu" else 65536

    def default_pack_tokens(self) -> int:
        """Tokens a forward should reach by packing *several examples* (``explain_many``): 1,024 on a CPU, the
        token budget on an accelerator. Measured with MiniLM on 1,000 SST-2 sentences, 2 threads, items sorted by
        length in packs of 1,024 (``benchmarks/bench_explain_many.py --tune``, docs/benchmarks.md): gradient methods
        3-9 % faster at 1,024 tokens than at 512, 2,048 within ±5 % of 1,024, IG and occlusion equal; packing IG to
        4,096 tokens was 1.3× slower."""
        return 1024 if self.device.type == "cpu" else self.default_token_budget()

    def max_positions(self) -> int | None:
        """Largest sequence length the model's position embeddings allow (None: unbounded)."""
        return None

    def label_names(self) -> list[str]:
        return []

    def keep_mask_problem(self) -> str | None:
        """Why this model cannot evaluate a keep-mask that drops positions (None: it can)."""
        return None

    def require_keep_mask(self) -> None:
        """Raise :class:`UnsupportedError` naming why, if the model cannot drop positions."""
        problem = self.keep_mask_problem()
        if problem is not None:
            raise UnsupportedError(
                f"{self.model_id}: {problem}; methods that drop positions (occlusion, rationales, faithfulness) "
                "need a model whose forward takes an attention mask")

    def check_vectors(self, example: Example) -> None:
        """:class:`InputError` unless ``example.input_vectors`` (when set) fit the model: a float ``[L, D]`` tensor,
        ``D`` the :meth:`input_width` (:func:`seqexplain.models.vectors.check_vectors`)."""
        if example.input_vectors is not None:  # (input_width may itself fail on a module without embeddings)
            check_vectors(example, self.input_width())

    def vectors_of(self, example: Example) -> torch.Tensor:
        """``example.input_vectors`` checked, as ``[1, L, D]`` on the model's device in its weights' dtype."""
        self.check_vectors(example)
        assert example.input_vectors is not None
        return cast_vectors(example.input_vectors, getattr(self, "model", None), self.device)

    def normalise_part(self, part: Part) -> Part:
        """``keep`` as a bool ``[b, L]`` tensor on the model's device (all-True if None), checked against the
        example and ``embeds``."""
        ex = part.example
        n_l = ex.length
        self.check_vectors(ex)
        keep = part.keep
        if keep is None:
            b = 1 if part.embeds is None else int(part.embeds.shape[0])
            keep = torch.ones(b, n_l, dtype=torch.bool, device=self.device)
        else:
            keep = keep.to(self.device).bool()
            if keep.dim() == 1:
                keep = keep.unsqueeze(0)
            if keep.shape[-1] != n_l:
                raise InputError(f"keep mask has {keep.shape[-1]} positions but the example has {n_l}")
            if part.embeds is not None and keep.shape[0] == 1 and part.embeds.shape[0] > 1:
                keep = keep.expand(int(part.embeds.shape[0]), n_l)
        if part.embeds is not None and part.embeds.shape[0] != keep.shape[0]:
            raise InputError(f"embeds batch {part.embeds.shape[0]} does not match keep batch {keep.shape[0]}")
        if not bool(keep.all()):
            self.require_keep_mask()
            verify_keep_mask(self, ex)
        if part.embeds is not None or ex.input_ids is None:
            verify_vectors(self, ex)
        rows_target = None if part.rows_target is None else part.rows_target.to(self.device).long().view(-1)
        return Part(ex, keep, part.embeds, rows_target)

    def apply_keep_rule(self, part: Part) -> Part:
        """Rule 4 of :mod:`seqexplain.models.keep` for targets read from the token before them: make each fallback
        reading position visible, splitting rows into one target each (``rows_target`` set, row-major) where that
        position would be seen by another target. Adapters whose targets are read elsewhere (a token labeller
        reads target ``i`` at ``i``) override it and apply their own reading rule."""
        ex, keep = part.example, part.keep
        assert keep is not None
        pos = ex.positions_tensor().to(keep.device)
        if bool((pos < 0).any()):
            return part  # targets without positions: the adapter reads its head position (classifier)
        floor = self.read_floor(ex)
        if part.rows_target is None and keep_rule.needs_split(keep, pos, floor):
            n_b, n_t = keep.shape[0], ex.n_targets
            rows = torch.arange(n_b, device=keep.device).repeat_interleave(n_t)
            tgt = torch.arange(n_t, device=keep.device).repeat(n_b)
            split = Part(ex, keep[rows], None if part.embeds is None else part.embeds[rows], tgt)
            return self.apply_keep_rule(split)
        p_rows = pos.view(1, -1).expand(keep.shape[0], -1)
        if part.rows_target is not None:
            p_rows = p_rows.gather(1, part.rows_target.view(-1, 1))
        fb = keep_rule.fallback_targets(keep, p_rows, floor)
        if bool(fb.any()):
            reads = keep_rule.reading_positions(keep, p_rows, floor)
            keep = keep_rule.force_visible(keep, reads, fb)
        return Part(ex, keep, part.embeds, part.rows_target)

    def logits(self, example: Example, keep: torch.Tensor | None = None, embeds: torch.Tensor | None = None,
               rows_target: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, V]`` raw logits at each target's reading position under ``keep`` / ``embeds``."""
        return self.logits_parts([Part(example, keep, embeds, rows_target)])[0]

    def logits_parts(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        """:meth:`logits_many` with every part normalised and the keep rule applied (rows split where needed).
        Parts whose examples carry different ``extra`` inputs (e.g. token type ids on some only) run in separate
        calls, one per set of names, so no adapter has to invent a value for an input an example lacks."""
        parts = [self.normalise_part(p) for p in parts]
        prepared = [self.apply_keep_rule(p) for p in parts]
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(tuple(sorted(p.example.extra)), []).append(i)
        out: list[torch.Tensor] = [torch.empty(0)] * len(prepared)
        with self._autocast():
            for index in groups.values():
                for i, z in zip(index, self.logits_many([prepared[i] for i in index]), strict=True):
                    out[i] = z
        # a part split into one row per target comes back [B·T, 1, V]: fold it to [B, T, V]
        return [z.reshape(p.n_rows, p.example.n_targets, -1) if p.rows_target is None and q.rows_target is not None
                else z for p, q, z in zip(parts, prepared, out, strict=True)]

    def ids_probe(self, example: Example) -> Example | None:
        """``example`` over token ids, for :func:`seqexplain.models.behaviour.verify_vectors`: itself when it has
        ids; for one over precomputed vectors, an adapter with an ids path returns the same positions over some
        valid token ids (None, the default: nothing to compare the vectors with)."""
        return example if example.input_ids is not None else None

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        """The block under ``torch.autocast`` when :attr:`autocast` is set. A torch error raised inside it (an
        operation without a kernel for that precision on this device: LSTMs under float16 on the CPU) becomes an
        :class:`UnsupportedError` naming the way out; running out of memory stays what it is."""
        if self.autocast is None:
            yield
            return
        if self.autocast not in (torch.bfloat16, torch.float16):
            raise InputError(f"autocast takes torch.bfloat16 or torch.float16, not {self.autocast}")
        try:
            with torch.autocast(self.device.type, dtype=self.autocast):
                yield
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            name = str(self.autocast).removeprefix("torch.")
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}) cannot run under {name} autocast on "
                f"{self.device.type} (torch: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                "load it without autocast, or with autocast='bf16'") from exc

    def distributions(self, example: Example, keep: torch.Tensor | None = None, embeds: torch.Tensor | None = None,
                      rows_target: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, V]`` log-distribution at each target's reading position (``[B, 1, V]`` with
        ``rows_target[B]``: only that target of each row)."""
        return torch.log_softmax(self.logits(example, keep, embeds, rows_target).float(), dim=-1)

    def score(self, example: Example, keep: torch.Tensor | None = None,
              embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T]`` the explained function of each target (:attr:`Example.objective`, defined in
        :mod:`seqexplain.models.objective`)."""
        return objective_values(example, self.logits(example, keep, embeds))

    def score_many(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        """:meth:`score` for several parts in shared forwards: per part ``[b, T]``."""
        return [objective_values(p.example, z) for p, z in zip(parts, self.logits_parts(parts), strict=True)]

    def predictions(self, example: Example, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(argmax [B, T], log p(target) [B, T])`` under ``keep``: what the model predicts from each visible
        subset (for rationale stopping rules)."""
        logp = self.distributions(example, keep)
        targets = example.target_ids.to(logp.device)
        tgt = torch.gather(logp, 2, targets.view(1, -1, 1).expand(logp.shape[0], -1, 1)).squeeze(-1)
        return logp.argmax(-1), tgt

    def with_objective(self, example: Example, objective: str = "logprob", foil: Any = None) -> Example:
        """``example`` explaining ``objective`` (:mod:`seqexplain.models.objective`); ``foil`` is required for
        ``"contrast"``."""
        if objective not in OBJECTIVES:
            raise InputError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
        if objective != "contrast":
            if foil is not None:
                raise InputError("a foil is only used with the contrast objective (objective='contrast', on the "
                                 "command line --objective contrast); drop the foil or set the objective")
            return example.replace(objective=objective, foil_ids=None, foil_tokens=None)
        if foil is None:
            raise InputError("the contrast objective needs a foil (foil=..., on the command line --foil): the token(s) "
                             "the target is contrasted with")
        ids, names = self.foil_ids(example, foil)
        if int(ids.shape[0]) != example.n_targets:
            raise InputError(f"the foil has {int(ids.shape[0])} tokens but there are {example.n_targets} targets; "
                             "give one foil token per target")
        same = [i for i in range(example.n_targets) if int(ids[i]) == int(example.target_ids[i])]
        if same and len(same) == example.n_targets:
            raise InputError(f"the foil is the target itself ({', '.join(repr(names[i]) for i in same)}): "
                             "log p(target) − log p(foil) is 0 whatever the input; give another foil")
        warnings = [*example.warnings, *self.foil_warnings(example, foil, names), *(
            f"target {i} ({example.target_tokens[i]!r}) and its foil are the same token: its contrast is 0 whatever "
            "the input, so all its scores are 0" for i in same)]
        return example.replace(objective="contrast", foil_ids=ids.long(), foil_tokens=names, warnings=warnings)
