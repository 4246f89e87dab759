"""A deployment's security config: TOML or JSON, relative files, unknown keys and bad rules refused by name."""

from __future__ import annotations

import pytest

from protocol import CmdRun
from workers.security import Security, SecurityConfigError, facts_of, load_security_config


def test_a_toml_config_with_a_rules_file_beside_it(tmp_path) -> None:
    (tmp_path / "site.toml").write_text('[[rules]]\nname = "no-make-deploy"\nprogram = "make"\nargs = "deploy"\nrisk = "high"\n')
    (tmp_path / "security.toml").write_text('rules_files = ["site.toml"]\n[policy]\nmedium = "confirm"\nconfirm_timeout_s = 5\n')
    security = Security(load_security_config(str(tmp_path / "security.toml")))
    assert (security.policy.medium, security.policy.confirm_timeout_s, security.policy.high) == ("confirm", 5, "confirm")
    names = {r.source.name for r in security.rules.matching(facts_of(CmdRun(id="a", command="sudo make deploy")))}
    assert names == {"no-make-deploy", "sudo"}


def test_a_json_config_can_drop_the_default_rules(tmp_path) -> None:
    (tmp_path / "s.json").write_text('{"default_rules": false, "rules": [{"command": "DROP TABLE", "risk": "high"}]}')
    security = Security(load_security_config(str(tmp_path / "s.json")))
    assert len(security.rules) == 1


@pytest.mark.parametrize(("text", "says"), [
    ("anlyzers = []", "anlyzers"),
    ('[policy]\nhigh = "maybe"', "maybe"),
    ("not toml ===", "not TOML"),
    ('rules_files = ["missing.toml"]', "cannot read rules file"),
    ('[[rules]]\nrisk = "high"\ncommand = "("', "not a regular expression"),
    ('[[rules]]\nrisk = "high"\nargs = "x"', "name the program"),
    ('[[rules]]\nrisk = "high"\npath = "/etc/{a,b"', "unclosed"),
    ('[policy]\nconfirm_timeout_s = 0', "confirm_timeout_s"),
])
def test_a_bad_config_is_refused_saying_what_is_wrong(tmp_path, text: str, says: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(SecurityConfigError, match=says):
        Security(load_security_config(str(tmp_path / "bad.toml")))
