"""Chat on the Engine: messages rendered with the model's template, replies that stop at any EOS id
or end-of-turn string, the oldest turns dropped (system prompt kept) when the context is outgrown,
clean errors; `tinyllm chat` and `generate` on a chat model; fine-tuning a Llama-family model
(instruct with its own chat template and LoRA, classify with LoRA)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tinyllm import modeldir
from tinyllm.checkpoint import load_model, save_model
from tinyllm.cli import main
from tinyllm.config import ModelConfig
from tinyllm.data.templates import ChatTemplate, ChatTemplateError
from tinyllm.errors import UserError
from tinyllm.models.decoder import GPT
from tinyllm.runtime.engine import Engine
from tinyllm.runtime.sampling import SamplingConfig
from tinyllm.tokenizer import HFTokenizer

from conftest import SHARED_DATA, shakespeare

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chat_tokenizer() -> HFTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                  "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([shakespeare(30000)], trainer=trainer)
    return HFTokenizer(tok, bos_token="<|im_start|>", eos_token="<|im_end|>", eos_ids=[0])


@pytest.fixture
def chat_dir(tmp_path):
    """A random tiny Llama-family chat model: HF tokenizer with ChatML specials and template."""
    tok = chat_tokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=96, n_layer=2, n_head=4,
                      n_kv_head=2, n_embd=32, norm="rmsnorm", position="rope", mlp="swiglu",
                      bias=False, qkv_bias=False, intermediate_size=48)
    d = save_model(GPT(cfg), tok, tmp_path / "chat-model")
    (d / "chat_template.jinja").write_text(CHATML, encoding="utf-8")
    return d


class Scripted(Engine):
    """An Engine whose backend emits a fixed list of token ids (and records each prefill)."""

    backend = "scripted"

    def __init__(self, path, script: list[int]):
        self.notes: list[str] = []
        super().__init__(modeldir.read_info(path), log=self.notes.append)
        self.script, self.prefills, self.i = script, [], 0

    def _logits(self) -> np.ndarray:
        out = np.zeros(self.tokenizer.vocab_size, dtype=np.float32)
        out[self.script[min(self.i, len(self.script) - 1)]] = 10.0
        self.i += 1
        return out

    def prefill(self, ids):
        self.prefills.append(list(ids))
        self.i = 0
        return self._logits()

    def step(self, token):
        return self._logits()


GREEDY = SamplingConfig(temperature=0, max_new_tokens=20)


def test_reply_is_rendered_with_the_template_and_stops_at_eos(chat_dir):
    tok = chat_tokenizer()
    script = tok.encode("Paris is it") + [tok.token_id("<|im_end|>")] + tok.encode(" junk")
    engine = Scripted(chat_dir, script)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}]
    assert "".join(engine.chat(msgs, GREEDY)) == "Paris is it"
    assert tok.decode(engine.prefills[0]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital?<|im_end|>\n"
        "<|im_start|>assistant\n")
    # any of the EOS ids ends a reply: here <|endoftext|> (id 0), listed in eos_ids
    engine = Scripted(chat_dir, tok.encode("Rome") + [0] + tok.encode(" more"))
    assert "".join(engine.chat(msgs, GREEDY)) == "Rome"


def test_stop_strings_and_generate_on_a_chat_model(chat_dir):
    tok = chat_tokenizer()
    engine = Scripted(chat_dir, tok.encode("Yes.\n\nNo more"))
    cfg = SamplingConfig(temperature=0, max_new_tokens=20, stop=["\n\n"])
    assert "".join(engine.generate("Well?", cfg)) == "Yes."
    assert "<|im_start|>user\nWell?<|im_end|>" in tok.decode(engine.prefills[-1])
    "".join(engine.generate("Well?", cfg, raw=True))  # raw: the text as it is
    assert tok.decode(engine.prefills[-1]) == "Well?"


def test_oldest_turns_are_dropped_and_the_system_prompt_kept(chat_dir):
    tok = chat_tokenizer()
    engine = Scripted(chat_dir, tok.encode("ok") + [tok.token_id("<|im_end|>")])
    msgs = [{"role": "system", "content": "SYSTEM RULES"}]
    for i in range(12):
        msgs += [{"role": "user", "content": f"question number {i} about kings"},
                 {"role": "assistant", "content": f"answer number {i}"}]
    msgs.append({"role": "user", "content": "last question"})
    cfg = SamplingConfig(temperature=0, max_new_tokens=16)
    assert "".join(engine.chat(msgs, cfg)) == "ok"
    prompt = engine.prefills[0]
    assert len(prompt) <= 96 - 16
    text = tok.decode(prompt)
    assert text.startswith("<|im_start|>system\nSYSTEM RULES") and "last question" in text
    assert "question number 0 " not in text and "<|im_start|>user" in text.split("RULES")[1][:30]
    assert engine.notes and "left out of the prompt" in engine.notes[0]
    ids, _, dropped = engine.chat_prompt(msgs, cfg)
    assert ids == prompt and dropped > 0 and dropped % 2 == 0  # whole turns, from a user turn on


def test_a_message_longer_than_the_context_is_an_error(chat_dir):
    engine = Scripted(chat_dir, [0])
    with pytest.raises(UserError, match="context holds 96"):
        engine.chat([{"role": "user", "content": "word " * 200}], GREEDY)
    with pytest.raises(UserError, match="message 0"):
        engine.chat([{"role": "robot", "content": "hi"}], GREEDY)


def test_a_template_that_fails_to_render_is_a_clean_error(chat_dir, tmp_path):
    (chat_dir / "chat_template.jinja").write_text(
        "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message comes "
        "first') }}{% endif %}", encoding="utf-8")
    engine = Scripted(chat_dir, [0])
    with pytest.raises(ChatTemplateError, match="failed to render: a system message comes first"):
        engine.chat([{"role": "user", "content": "hi"}], GREEDY)
    r = CliRunner().invoke(main, ["chat", "--model", str(chat_dir)], input="hi\n")
    assert r.exit_code == 2 and "chat_template.jinja" in r.output
    with pytest.raises(ChatTemplateError, match=r"\.jinja:1: the chat template does not compile"):
        ChatTemplate("{% for %}", where="x.jinja").render([])


def test_templates_are_sandboxed():
    t = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(ChatTemplateError):
        t.render([{"role": "user", "content": "x"}])
    t = ChatTemplate("{{ messages[0]['content'] | tojson }}{{ bos_token }}", bos_token="<s>")
    assert t.render([{"role": "user", "content": "é\"<"}]) == '"é\\"<"<s>'


def test_cli_chat_keeps_the_conversation_and_resets(chat_dir, monkeypatch):
    seen = []
    real = Engine.chat

    def spy(self, messages, cfg=None):
        seen.append([dict(m) for m in messages])
        return real(self, messages, cfg)
    monkeypatch.setattr(Engine, "chat", spy)
    r = CliRunner().invoke(main, ["chat", "--model", str(chat_dir), "-t", "0", "-n", "3",
                                  "--system", "Be kind."], input="one\ntwo\n/reset\nthree\n")
    assert r.exit_code == 0, r.output
    assert [m["role"] for m in seen[1]] == ["system", "user", "assistant", "user"]
    assert seen[1][0]["content"] == "Be kind." and seen[1][3]["content"] == "two"
    assert [m["content"] for m in seen[2]] == ["Be kind.", "three"]


def test_finetune_instruct_uses_the_chat_template_with_lora(chat_dir, tmp_path):
    book = json.loads((SHARED_DATA / "instruction-data.json").read_text(encoding="utf-8"))[:40]
    (tmp_path / "data.json").write_text(json.dumps(book), encoding="utf-8")
    from tinyllm.tasks.instruct import InstructTask

    report = InstructTask().finetune(tmp_path / "data.json", tmp_path / "ft", model=str(chat_dir),
                                     max_steps=3, batch_size=4, lora_rank=2, quiet=True,
                                     callbacks=[])
    out = tmp_path / "ft"
    assert report["template"] == "chat"
    meta = modeldir.read_info(out).meta
    assert meta["task"] == "instruct" and "<|im_start|>" in meta["template"]["chat_template"]
    assert meta["train"]["lora"]["lora_modules"] == 8
    assert (out / "chat_template.jinja").read_text() == CHATML
    tuned = load_model(out)
    assert not any("lora" in k for k in tuned.state_dict())
    from tinyllm.engines import open_engine

    engine = open_engine(out, "torch")
    assert engine.chat_template is not None
    "".join(engine.chat([{"role": "user", "content": "Hi"}], SamplingConfig(max_new_tokens=3)))


def test_finetune_classify_from_a_llama_model_with_lora(chat_dir, tmp_path):
    from tinyllm.tasks.classify import ClassifyTask

    rows = [f"{'good' if i % 2 else 'bad'} day number {i}\t{'pos' if i % 2 else 'neg'}"
            for i in range(24)]
    (tmp_path / "toy.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    report = ClassifyTask().finetune(tmp_path / "toy.tsv", tmp_path / "clf", model=str(chat_dir),
                                     lora_rank=2, epochs=1, batch_size=8, quiet=True)
    assert report["train"]["params"]["lora_modules"] == 8
    clf = load_model(tmp_path / "clf")
    assert clf.config.family == "llama" and clf.config.n_classes == 2
    from tinyllm.engines import open_engine

    probs = open_engine(tmp_path / "clf", "torch").classify(["good day", "bad day"])
    assert probs.shape == (2, 2)
