"""Error catalogue and `schoolgate esia explain`."""

from __future__ import annotations

import re

import pytest

from schoolgate.cli import main
from schoolgate.esia.errors import CATALOGUE, EsiaError, explain, normalize_code


def test_catalogue_entries_are_complete():
    assert {"ESIA-007005", "ESIA-007011", "ESIA-007014", "ESIA-007053"} <= set(CATALOGUE)
    for code, entry in CATALOGUE.items():
        assert re.fullmatch(r"ESIA-\d{6}|SG-ESIA-\d{3}", code)
        assert entry.message_ru and entry.message_en and entry.hint
        assert re.search("[а-яА-Я]", entry.message_ru), code  # staff-facing text is Russian


def test_007053_hint_names_the_usual_mistakes():
    text = explain("ESIA-007053")
    assert "PEM" in text and "SHA-1" in text and "DER" in text and "clientSecretWrong" in text


@pytest.mark.parametrize(
    "raw", ["ESIA-007053", "esia-007053", "007053", "7053", "ESIA-007053: OAuthErrorEnum"]
)
def test_code_normalisation(raw):
    assert normalize_code(raw) == "ESIA-007053"


def test_from_provider_response():
    error = EsiaError.from_response(
        {
            "error": "invalid_grant",
            "error_description": "ESIA-007011: The provided authorization grant ... is invalid",
        }
    )
    assert isinstance(error, Exception) and error.code == "ESIA-007011"
    assert "single-use" in error.hint and error.as_dict()["message_ru"].startswith("Код авторизации")
    unknown = EsiaError.from_response({"error": "weird"})
    assert unknown.message_en == "Unknown ESIA error"


def test_cli_explain(capsys):
    assert main(["esia", "explain", "ESIA-007053"]) == 0
    out = capsys.readouterr().out
    assert "RU: client_secret сформирован некорректно" in out and "hint:" in out
    assert main(["esia", "explain", "ESIA-999999"]) == 1
    assert "not in the catalogue" in capsys.readouterr().err
    assert main(["esia", "explain"]) == 0
    assert "SG-ESIA-101" in capsys.readouterr().out
