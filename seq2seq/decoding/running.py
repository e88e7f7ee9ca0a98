"""Translation over a running batch (continuous batching): sentences join between decoder steps and leave as
soon as they are done, instead of waiting for the whole batch.

A server under load keeps one batch going: every request's sentences are encoded when they arrive and join
the rows already being decoded (`RunningTranslation.add`), and each sentence is handed back the step it
ends (`RunningTranslation.advance`). The searches are `search.RunningGreedy` and `search.RunningBeams`, the
same code `translate_sentences` runs over a fixed batch, and every sentence keeps its own step count, so a
sentence's hypotheses do not depend on the sentences beside it: the outputs equal `translate`'s.

Greedy and beam search (n-best, length and coverage penalties) run this way; sampling, a shortlist, forced
prefixes and required phrases decode whole batches (`translate_sentences`): `runs(cfg, ...)` says which.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import torch

from seq2seq.config import DecodeConfig
from seq2seq.data.batches import make_batch
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.inference import encode_sources
from seq2seq.decoding.model_search import ModelState, max_output_lengths, model_step
from seq2seq.decoding.search import Hypothesis, RunningBeams, RunningGreedy

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.decoding.ensemble import DecodingModel

log = logging.getLogger(__name__)


def runs(cfg: DecodeConfig, shortlist: bool = False, steered: bool = False) -> bool:
    """Whether sentences decoded with `cfg` can join a running batch: greedy or beam search without a
    shortlist, prefixes or required phrases (`steered`)."""
    return not (cfg.sampling or shortlist or steered)


class RunningTranslation:
    """One running batch of `model` decoding with `cfg` (greedy when `cfg.beam_size == 1`, beam search above).

    `add(sentences, tags)` queues sentences (each with a tag of the caller's choosing) into the batch;
    `advance()` takes one decoder step and returns the (tag, n-best hypotheses) of every sentence that ended.
    `len()` is the number of sentences in the batch. An empty sentence gets one empty hypothesis at the next
    `advance` without running the model.
    """

    def __init__(
        self,
        model: DecodingModel,
        tokenizer: Tokenizer,
        cfg: DecodeConfig,
        device: torch.device,
        max_src_tokens: int | None = None,
    ) -> None:
        if not runs(cfg):
            raise ValueError("sampling decodes whole batches, not a running one")
        model.eval()
        self.model, self.tokenizer, self.cfg, self.device, self.max_src_tokens = (
            model,
            tokenizer,
            cfg,
            device,
            max_src_tokens,
        )
        step = model_step(model)
        if cfg.beam_size == 1:
            self.search: RunningGreedy | RunningBeams = RunningGreedy(step)
        else:
            self.search = RunningBeams(step, cfg.beam_size, cfg.alpha, cfg.nbest, coverage_penalty=cfg.coverage_penalty)
        self.tags: dict[int, Hashable] = {}  # the sentences in the batch: number -> tag
        self.empty: list[tuple[Hashable, list[Hypothesis]]] = []  # empty sentences, handed back at the next step

    def __len__(self) -> int:
        return len(self.search) + len(self.empty)

    @torch.no_grad()
    def add(self, sentences: Sequence[str], tags: Sequence[Hashable]) -> None:
        """Sentences that join the batch (encoded together), each with its tag. Sources longer than
        `max_src_tokens` subwords are cut (with a warning)."""
        todo = [k for k, s in enumerate(sentences) if s.strip()]
        self.empty += [(tags[k], [Hypothesis([], 0.0, 0.0)]) for k, s in enumerate(sentences) if not s.strip()]
        if not todo:
            return
        ids = encode_sources(self.tokenizer, [sentences[k] for k in todo])
        if self.max_src_tokens is not None:
            for seq in ids:
                if len(seq) > self.max_src_tokens:
                    log.warning("a sentence of %d subword tokens is cut to %d", len(seq), self.max_src_tokens)
            ids = [seq[: self.max_src_tokens] for seq in ids]
        batch = make_batch(ids).to(self.device)
        memory, decoder = self.model.encode(batch.src, batch.src_lengths)
        sentence = torch.arange(len(todo), device=self.device)
        state = ModelState(decoder, memory, sentence=sentence)
        max_lengths = max_output_lengths(batch.src_lengths, self.cfg).to(self.device)
        if isinstance(self.search, RunningBeams):  # every sentence's decoder state once per beam
            state = state.index_select(sentence.repeat_interleave(self.cfg.beam_size))
            numbers = self.search.add(state, max_lengths, batch.src_lengths)
        else:
            numbers = self.search.add(state, max_lengths)
        self.tags.update(zip(numbers, (tags[k] for k in todo)))

    @torch.no_grad()
    def advance(self) -> list[tuple[Hashable, list[Hypothesis]]]:
        """One decoder step; the sentences that ended leave the batch: (tag, their n-best hypotheses) each."""
        ended, self.empty = self.empty, []
        if len(self.search):
            for number, hyps in self.search.advance():
                ended.append((self.tags.pop(number), [hyps] if isinstance(hyps, Hypothesis) else hyps))
        return ended
