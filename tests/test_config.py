import pytest

from seq2seq.config import Config, ConfigError


def test_defaults_are_valid():
    Config().validate()


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("train", "teacher_forcing_ratio", 1.5, "train.teacher_forcing_ratio"),
        ("train", "teacher_forcing_ratio", -0.1, "train.teacher_forcing_ratio"),
        ("train", "clip_grad_norm", -1.0, "train.clip_grad_norm"),
        ("decode", "beam_size", 0, "decode.beam_size"),
        ("model", "hidden_size", 0, "model.hidden_size"),
        (
            "model",
            "cell",
            "transformer",
            "model.cell='transformer' is not allowed; choose one of ['rnn', 'lstm', 'gru']",
        ),
        ("model", "attention", "multihead", "model.attention"),
        ("train", "optimizer", "lion", "train.optimizer"),
        ("tokenizer", "type", "wordpiece", "tokenizer.type"),
        ("data", "format", "xml", "data.format"),
        ("model", "dropout", 1.0, "model.dropout"),
    ],
)
def test_out_of_range_values_name_the_key_and_what_is_allowed(section, key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        Config.from_dict({section: {key: value}})


def test_unknown_keys_are_rejected_by_name():
    with pytest.raises(ConfigError, match=r"model\.hiden_size"):
        Config.from_dict({"model": {"hiden_size": 3}})
    with pytest.raises(ConfigError, match="unknown config section"):
        Config.from_dict({"optimiser": {}})


def test_luong_dot_with_a_bidirectional_encoder_is_refused():
    with pytest.raises(ConfigError, match="luong_dot"):
        Config.from_dict({"model": {"attention": "luong_dot", "bidirectional": True}})
    Config.from_dict({"model": {"attention": "luong_dot", "bidirectional": False}})


def test_round_trip_through_a_dict():
    config = Config.from_dict({"model": {"cell": "lstm"}, "train": {"max_steps": 10}})
    assert Config.from_dict(config.to_dict()) == config
