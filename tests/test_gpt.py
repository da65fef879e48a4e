"""GPT-2 generation: the cache against full recomputation, left padding, identical greedy output to
transformers, seeds, streaming, text decoding, [SEP] and the sign-correct repetition penalty on a
model with known logits, perplexity against brute force, save/load, training and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import run_cli

from zhtext.errors import ZhtextError
from zhtext.neural.batching import pad
from zhtext.neural.decoding import DecodeConfig
from zhtext.neural.lmdata import pack_blocks, split_heldout
from zhtext.neural.tokens import squeeze_spaces
from zhtext.tasks.generate import GPTStep, GPTTrainConfig, TextGenerator, _Detokenizer

TEXTS = ["我爱北京天安门", "北京是中国的首都", "今天天气很好，我们去公园", "话说天下大势，分久必合"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["hello", "world", "你", "好", "，", "##s", ",", ".", "我", "们"]


def tiny(seed: int = 0, positions: int = 64) -> TextGenerator:
    torch.manual_seed(seed)
    return TextGenerator.from_scratch(TEXTS, layers=2, hidden=32, block_size=positions, dropout=0.0)


def wordpiece_tokenizer():
    """A BERT WordPiece tokenizer (like bert-base-chinese's) with two Latin words."""
    from transformers import BertTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    return BertTokenizerFast(vocab=vocab, do_lower_case=False)


def known_logits_model(logits: list[float], tokenizer, positions: int = 16) -> TextGenerator:
    """A GPT-2 whose next-token logits are ``logits`` after any prefix: the final layer norm maps
    every hidden state to the unit vector e0, and column 0 of the (tied) embedding is ``logits``.
    The config's eos id is GPT-2's 50256, outside the vocabulary, as in uer checkpoints."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(logits), n_positions=positions, n_embd=8, n_layer=1,
                        n_head=2, eos_token_id=50256, bos_token_id=50256)
    lm = GPT2LMHeadModel(config)
    with torch.no_grad():
        lm.transformer.wte.weight[:, 0] = torch.tensor(logits)
        lm.transformer.ln_f.weight.zero_()
        lm.transformer.ln_f.bias.zero_()
        lm.transformer.ln_f.bias[0] = 1.0
    return TextGenerator(lm, tokenizer)


def bpe_tokenizer():
    """GPT-2-style byte-level BPE with few merges, so a Chinese character spans several tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=262, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["hello world hello there"] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")


# --------------------------------------------------------------------------- the step function


def test_cached_steps_equal_full_recomputation():
    gen = tiny()
    step = GPTStep(gen.lm)
    ids = torch.tensor([gen.prompt_ids(["我爱北京"], 8)[0]])
    logits, state = step.prefill(ids, torch.ones_like(ids))
    seq = ids
    for token in [7, 9, 11, 3]:
        full = gen.lm(input_ids=seq).logits[:, -1]
        torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-5)
        seq = torch.cat([seq, torch.tensor([[token]])], dim=1)
        logits, state = step.step(torch.tensor([token]), state)


def test_left_padding_changes_no_continuation_and_greedy_equals_transformers():
    gen = tiny()
    prompts = ["我", "今天天气很好，我们去", "北京是中国"]
    alone = [gen.generate(p, sample=False, max_new_tokens=12)[0] for p in prompts]
    batched = [out[0] for out in gen.generate(prompts, sample=False, max_new_tokens=12)]
    assert batched == alone
    # transformers' generate() on the same left-padded ids and mask, token for token.
    options = DecodeConfig(max_new_tokens=12)
    ours = [seqs[0] for _, seqs in gen.generate_ids(prompts, options)]
    ids, mask = pad(gen.prompt_ids(prompts, 12), gen.pad_id, left=True)
    hf = gen.lm.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                         max_new_tokens=12, eos_token_id=gen.eos_ids, pad_token_id=gen.pad_id)
    expect = [[t for t in row if t != gen.pad_id] for row in hf[:, ids.shape[1]:].tolist()]
    assert [[t for t in row if t != gen.pad_id] for row in ours] == expect


def test_beam_rows_do_not_depend_on_the_batch():
    gen = tiny()
    prompts = ["我", "北京是中国的"]
    alone = [gen.generate(p, beam=3, num_return=2, max_new_tokens=6) for p in prompts]
    assert gen.generate(prompts, beam=3, num_return=2, max_new_tokens=6) == alone


# --------------------------------------------------------------------------- the model API


def test_call_and_predict_give_the_first_continuation_of_generate():
    gen = tiny()
    prompts = ["我爱", "北京", "今天"]
    samples = gen.generate(prompts, seed=5, num_return=3, max_new_tokens=10)
    # The first of N seeded samples is the one continuation predict() draws.
    assert gen.predict(prompts, seed=5, max_new_tokens=10) == [s[0] for s in samples]
    assert gen(prompts, seed=5, max_new_tokens=10) == [s[0] for s in samples]
    assert gen("北京", seed=5, max_new_tokens=10) == samples[1][0]
    assert gen.generate("北京", seed=5, num_return=3, max_new_tokens=10) == samples[1]
    # num_return asked of predict() still gives one string per prompt.
    assert gen.predict(prompts, seed=5, num_return=2, max_new_tokens=10) == [s[0] for s in samples]
    # A DecodeConfig and single overrides are the same settings.
    greedy = DecodeConfig(max_new_tokens=6)
    assert gen.predict(prompts, greedy) == gen.predict(prompts, sample=False, max_new_tokens=6)
    beams = gen.generate(prompts, beam=3, num_return=2, max_new_tokens=6)
    assert gen.predict(prompts, beam=3, max_new_tokens=6) == [b[0] for b in beams]


def test_decoding_settings_one_vocabulary():
    assert TextGenerator.decoding == DecodeConfig(sample=True, top_k=50, max_new_tokens=64)
    assert TextGenerator.decode_config(beam=4).sample is False  # beam search does not sample
    assert TextGenerator.decode_config(DecodeConfig(top_p=0.5), seed=3) == DecodeConfig(top_p=0.5, seed=3)
    with pytest.raises(ZhtextError, match="'beams' \\(now 'beam'\\)"):
        TextGenerator.decode_config(beams=2)
    with pytest.raises(ZhtextError, match="'num' \\(now 'num_return'\\)"):
        tiny().predict(["我"], num=2)
    with pytest.raises(ZhtextError, match="do not mix"):
        TextGenerator.decode_config(sample=True, beam=2)
    with pytest.raises(ZhtextError, match="top_p"):
        TextGenerator.decode_config(top_p=0.0)


def test_train_config_defaults_and_checks():
    config = GPTTrainConfig()
    assert (config.block_size, config.epochs, config.batch_size, config.warmup) == (128, 1, 16, 0.1)
    with pytest.raises(ZhtextError, match="block_size"):
        GPTTrainConfig(block_size=1)
    with pytest.raises(ZhtextError, match="takes a GPTTrainConfig"):
        from zhtext.neural.trainer import TrainConfig

        TextGenerator.train(TrainConfig(train=TEXTS, output="x"))


def test_training_reads_files_and_texts_alike(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("\n".join(TEXTS * 5) + "\n\n", encoding="utf-8")
    second.write_bytes("\n".join(TEXTS[::-1] * 5).encode("gb18030"))  # the codec is detected
    texts = TEXTS * 5 + TEXTS[::-1] * 5
    settings = {"layers": 1, "hidden": 32, "block_size": 16, "max_steps": 3, "batch_size": 4,
                "dropout": 0.0, "progress": False}
    from_files = TextGenerator.train(GPTTrainConfig(train=[first, second], dev=first,
                                                    output=tmp_path / "f", **settings))
    from_texts = TextGenerator.train(GPTTrainConfig(train=texts, dev=TEXTS * 5,
                                                    output=tmp_path / "t", **settings))
    # The same run (the clock aside): same vocabulary, weights, batches and dev scores.
    assert len(from_files.history) == len(from_texts.history) > 0
    assert from_files.history == [{**h, "seconds": f["seconds"]} for h, f in
                                  zip(from_texts.history, from_files.history)]
    assert from_files.evaluate(first) == from_texts.evaluate(TEXTS * 5)
    assert from_files.evaluate([first, second]) == from_texts.evaluate(texts)
    assert from_files.meta["block_size"] == 16 and from_files.meta["from_scratch"]["layers"] == 1


# --------------------------------------------------------------------------- sampling and streaming


def test_same_seed_same_text_and_another_seed_differs():
    gen = tiny()
    first = gen.generate(["我爱", "北京"], seed=7, num_return=2, max_new_tokens=20, top_k=0)
    assert gen.generate(["我爱", "北京"], seed=7, num_return=2, max_new_tokens=20, top_k=0) == first
    assert gen.generate(["我爱", "北京"], seed=8, num_return=2, max_new_tokens=20, top_k=0) != first
    # A prompt's samples do not depend on the other prompts of its batch.
    assert gen.generate("北京", seed=7, num_return=2, max_new_tokens=20, top_k=0) == first[1]


def test_streamed_pieces_join_to_the_generated_text_in_order():
    gen = tiny()
    gen.batch_size = 2
    prompts = ["我爱", "北京", "今天"]
    options = {"seed": 3, "num_return": 2, "max_new_tokens": 15, "top_k": 0}
    pieces = list(gen.stream(prompts, **options))
    order = []
    joined: dict[tuple[int, int], str] = {}
    for piece in pieces:
        key = (piece.prompt, piece.sample)
        if not order or order[-1] != key:
            order.append(key)
        joined[key] = joined.get(key, "") + piece.text
    assert order == [(p, s) for p in range(3) for s in range(2)]  # each sequence contiguous
    assert [piece.last for piece in pieces].count(True) == 6
    expected = gen.generate(prompts, **options)
    assert [[joined[(p, s)] for s in range(2)] for p in range(3)] == expected


def test_beam_search_cannot_stream():
    with pytest.raises(ZhtextError, match="streamed"):
        list(tiny().stream("我", beam=2))


# --------------------------------------------------------------------------- text


def test_no_spaces_between_cjk_characters_but_latin_words_keep_theirs():
    gen = known_logits_model([0.0] * (len(SPECIALS) + len(WORDS)), wordpiece_tokenizer())
    ids = gen.tokenizer("hello world 你好，hellos.", add_special_tokens=False)["input_ids"]
    assert gen.decode([gen.bos_id, *ids, gen.pad_id]) == "hello world你好，hellos."
    # A continuation joins its prompt: a space before a Latin word, none before a character.
    hello, world, ni = (gen.tokenizer.convert_tokens_to_ids(t) for t in ("hello", "world", "你"))
    assert gen.continuation([gen.bos_id, hello], [world, ni]) == " world你"
    assert gen.continuation([gen.bos_id, ni], [ni, hello]) == "你hello"
    assert squeeze_spaces("我 们 ， ok go 。") == "我们，ok go。"


def test_streaming_byte_level_bpe_never_shows_half_a_character():
    tokenizer = bpe_tokenizer()
    ids = tokenizer("你好 world", add_special_tokens=False)["input_ids"]
    assert len(ids) > len("你好 world") - 2  # Chinese characters span several byte tokens
    detok = _Detokenizer(lambda x: tokenizer.decode(x), [], hold_spaces=False)
    pieces = [detok.push(t) for t in ids] + [detok.finish()]
    assert not any("\ufffd" in p for p in pieces)
    assert "".join(pieces) == "你好 world"


def test_bpe_checkpoint_round_trip(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = bpe_tokenizer()
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16,
                                    n_layer=1, n_head=2, bos_token_id=eos, eos_token_id=eos))
    lm.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    gen = TextGenerator.load(tmp_path)
    assert not gen.bert_style and gen.eos_ids == [eos] and gen.bos_id == eos
    assert gen.prompt_ids([""], 4) == [[eos]]  # an empty prompt starts from the bos token
    streamed = "".join(p.text for p in gen.stream("hello", seed=1, max_new_tokens=12))
    assert streamed == gen.generate("hello", seed=1, max_new_tokens=12)[0]


# --------------------------------------------------------------------------- known logits


def test_sep_stops_generation_and_an_eos_id_outside_the_vocab_is_ignored(tmp_path):
    tokenizer = wordpiece_tokenizer()
    logits = [-5.0] * len(tokenizer)
    logits[tokenizer.sep_token_id] = 3.0
    logits[tokenizer.convert_tokens_to_ids("好")] = 2.0
    # Saved and loaded back by path, as a uer checkpoint would be (config eos 50256).
    known_logits_model(logits, tokenizer).lm.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    gen = TextGenerator.load(tmp_path)
    assert gen.bert_style and gen.lm.config.eos_token_id == 50256
    assert gen.eos_ids == [tokenizer.sep_token_id]
    ids = gen.generate_ids(["你"], DecodeConfig(max_new_tokens=10))
    assert ids[0][1] == [[]]
    assert gen.generate("你", sample=False, min_new_tokens=3, max_new_tokens=10) == ["好好好"]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_repetition_penalty_lowers_a_seen_token_whatever_its_sign(sign):
    tokenizer = wordpiece_tokenizer()
    a, b = tokenizer.convert_tokens_to_ids(["你", "好"])
    logits = [-8.0] * len(tokenizer)
    # Positive: 2.0 and 1.5 (2.0 / 2 = 1.0 falls below 1.5); negative: -1.0 and -1.2
    # (-1.0 * 2 = -2.0 falls below -1.2, where dividing would have raised it to -0.5).
    logits[a], logits[b] = (2.0, 1.5) if sign > 0 else (-1.0, -1.2)
    gen = known_logits_model(logits, tokenizer)
    assert gen.generate("你", sample=False, max_new_tokens=1) == ["你"]
    assert gen.generate("你", sample=False, max_new_tokens=1, repetition_penalty=2.0) == ["好"]
    # Unseen tokens are untouched: a prompt without "你" keeps it first.
    assert gen.generate("我", sample=False, max_new_tokens=1, repetition_penalty=2.0) == ["你"]


def test_perplexity_of_a_known_distribution_matches_brute_force():
    tokenizer = wordpiece_tokenizer()
    logits = torch.linspace(-2.0, 2.0, len(tokenizer))
    gen = known_logits_model(logits.tolist(), tokenizer, positions=8)
    logp = torch.log_softmax(logits, dim=0)
    texts = ["你好", "hello world，我们", "你好你好你好hello你好你好们们我"]  # the last: 16 tokens > 8
    nll, count = 0.0, 0
    for doc in gen.documents(texts):
        nll -= float(logp[doc[1:]].sum())  # every token after [CLS], [SEP] included
        count += len(doc) - 1
    scores = gen.evaluate(texts, batch_size=2)
    assert scores["tokens"] == count
    assert scores["ppl"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    chars = sum(len(t.replace(" ", "")) for t in texts)
    assert scores["bits_per_char"] == pytest.approx(nll / math.log(2) / chars, rel=1e-5)


def test_max_new_tokens_is_capped_to_the_positions_and_long_prompts_keep_their_tail():
    gen = tiny(positions=16)
    options = gen.cap_new_tokens(DecodeConfig(max_new_tokens=100))
    assert options.max_new_tokens == 8
    rows = gen.prompt_ids(["我爱北京天安门北京是中国的首都今天"], options.max_new_tokens)
    assert len(rows[0]) == 8 and rows[0][0] == gen.bos_id
    assert gen.decode(rows[0]) == "中国的首都今天"
    out = gen.generate_ids(["我爱北京天安门北京是中国的首都今天"],
                           DecodeConfig(max_new_tokens=100, min_new_tokens=100))
    assert len(out[0][1][0]) == 8


# --------------------------------------------------------------------------- data, training, saving


def test_pack_blocks_and_heldout_split():
    gen = tiny()
    blocks = pack_blocks(TEXTS * 3, gen.documents, 10)
    stream = [t for doc in gen.documents(TEXTS * 3) for t in doc]
    assert blocks.shape == (len(stream) // 10, 10)
    assert blocks.reshape(-1).tolist() == stream[: blocks.size]
    train, held = split_heldout(["a", "", "b", "c", "d"], every=2)
    assert (train, held) == (["a", "c"], ["b", "d"])
    with pytest.raises(ZhtextError, match="too few"):
        pack_blocks(["我"], gen.documents, 10)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt-model")
    torch.manual_seed(0)
    TextGenerator.train(GPTTrainConfig(train=TEXTS * 20, dev=TEXTS[:2], output=out, layers=1,
                                       hidden=32, block_size=32, epochs=3, batch_size=8, lr=5e-3,
                                       dropout=0.0, progress=False))
    return out


def test_training_lowers_perplexity_and_the_saved_model_loads_back(trained_dir):
    loaded = TextGenerator.load(trained_dir)
    history = loaded.meta["history"]
    assert history[-1]["ppl"] < history[0]["ppl"]
    untrained = tiny()
    assert loaded.evaluate(TEXTS)["ppl"] < untrained.evaluate(TEXTS)["ppl"] / 2

def test_save_load_round_trip_keeps_outputs(tmp_path):
    fresh = tiny()
    fresh.save(tmp_path / "saved")
    again = TextGenerator.load(tmp_path / "saved")
    assert again.evaluate(TEXTS) == fresh.evaluate(TEXTS)
    assert again.generate(TEXTS, seed=2, max_new_tokens=8) == fresh.generate(TEXTS, seed=2,
                                                                              max_new_tokens=8)


def test_loading_something_else_fails_with_one_line(tmp_path):
    from transformers import BertConfig, BertLMHeadModel

    BertLMHeadModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=8, is_decoder=True)
                    ).save_pretrained(tmp_path)
    wordpiece_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(ZhtextError, match="not a GPT-2"):
        TextGenerator.load(tmp_path)


# --------------------------------------------------------------------------- CLI


def test_cli_generate_streamed_equals_unstreamed_and_formats(monkeypatch, capsys, trained_dir,
                                                             tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("我爱\n\n北京\n", encoding="utf-8")
    common = ["--model", str(trained_dir), "--file", str(prompts), "--seed", "4", "--num", "2",
              "--max-new-tokens", "8"]
    code, streamed, _ = run_cli(monkeypatch, capsys, "generate", *common)
    assert code == 0
    code, plain, _ = run_cli(monkeypatch, capsys, "generate", *common, "--no-stream")
    assert code == 0 and streamed == plain
    lines = plain.splitlines()
    assert len(lines) == 4 and lines[0].startswith("我爱") and lines[2].startswith("北京")
    code, out, _ = run_cli(monkeypatch, capsys, "generate", *common, "--format", "jsonl")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["prompt"], r["sample"]) for r in records] == [("我爱", 0), ("我爱", 1),
                                                             ("北京", 0), ("北京", 1)]
    assert [r["prompt"] + r["text"] for r in records] == lines
    code, out, _ = run_cli(monkeypatch, capsys, "generate", "我爱", "--model", str(trained_dir),
                           "--beam", "3", "--max-new-tokens", "5")
    assert code == 0 and out.startswith("我爱") and len(out.splitlines()) == 1


def test_cli_generate_output_file_holds_what_stdout_shows(monkeypatch, capsys, trained_dir,
                                                          tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("我爱\n北京\n今天\n", encoding="utf-8")
    for fmt in ("text", "jsonl"):
        common = ["-m", str(trained_dir), "--file", str(prompts), "--seed", "4", "--num", "2",
                  "--max-new-tokens", "8", "--format", fmt, "--batch-size", "2"]
        code, shown, _ = run_cli(monkeypatch, capsys, "generate", *common)
        assert code == 0 and len(shown.splitlines()) == 6
        target = tmp_path / f"out.{fmt}"
        code, printed, _ = run_cli(monkeypatch, capsys, "generate", *common, "-o", str(target))
        assert code == 0 and printed == ""
        assert target.read_text(encoding="utf-8") == shown


def test_cli_generate_leaves_no_output_file_on_an_error(monkeypatch, capsys, trained_dir,
                                                        tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("我爱\n北京\n今天\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real = TextGenerator.generate
    calls = []

    def fails_on_the_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ZhtextError("the model broke")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TextGenerator, "generate", fails_on_the_second_batch)
    code, out, err = run_cli(monkeypatch, capsys, "generate", "-m", str(trained_dir), "--file",
                             str(prompts), "--batch-size", "2", "--seed", "1", "-o",
                             str(out_dir / "gen.txt"))
    assert (code, out, err) == (1, "", "zhtext: error: the model broke\n")
    assert len(calls) == 2 and list(out_dir.iterdir()) == []
    # An error before anything is generated (the model cannot load) leaves nothing either.
    code, out, err = run_cli(monkeypatch, capsys, "generate", "x", "-m", str(tmp_path / "none"),
                             "-o", str(out_dir / "gen.txt"))
    assert code == 1 and "no such directory" in err and list(out_dir.iterdir()) == []


def test_cli_train_and_evaluate_gpt(monkeypatch, capsys, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 10) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    code, _, err = run_cli(monkeypatch, capsys, "train", "gpt", "--train", str(corpus), "-o",
                           str(out), "--from-scratch", "--layers", "1", "--hidden", "32",
                           "--block-size", "32", "--max-steps", "3", "--batch-size", "4",
                           "--heldout-every", "4")
    assert code == 0, err
    assert "dev perplexity" in " ".join(err.split())
    code, printed, _ = run_cli(monkeypatch, capsys, "evaluate", "gpt", "--model", str(out),
                               "--data", str(corpus), "--json", "--heldout-every", "4")
    assert code == 0
    scores = json.loads(printed)
    held = split_heldout(TEXTS * 10, 4)[1]
    direct = TextGenerator.load(out).evaluate(held)
    assert scores["ppl"] == pytest.approx(direct["ppl"], rel=1e-5)
    assert scores["lines"] == len(held) == 10


@pytest.mark.parametrize("args, message", [
    (["generate", "x", "--model", "/nonexistent/model"], "no such directory"),
    (["generate", "x", "--file", "p.txt", "--model", "m"], "not both"),
    (["generate", "x", "--model", "m", "--top-p", "1.5"], "zhtext: error: --top-p must be at most 1, got 1.5"),
    (["generate", "x", "-m", "m", "--sample", "--beam", "2"], "zhtext: error: --sample and --beam do not mix"),
    (["generate", "--file", "/nonexistent.txt", "--model", "m"], "nonexistent"),
    (["train", "gpt", "--train", "x.txt", "-o", "o"], "--from-scratch"),
])
def test_cli_errors_are_one_line(monkeypatch, capsys, args, message):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("zhtext: error:") and message in err
