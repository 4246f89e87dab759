from protocol import Subjects
from protocol._subjects import TENANT_NAME


def test_a_tenants_subjects_live_under_its_prefix():
    acme = Subjects("corral", "acme")
    assert acme.ctl("create") == "corral.t.acme.ctl.create"
    assert acme.action("S1", "cmd_run") == "corral.t.acme.session.S1.action.cmd_run"
    assert acme.obs("S1", "error") == "corral.t.acme.session.S1.obs.error"
    assert acme.lookup("S1") == "corral.t.acme.lookup.S1"
    assert acme.inbox_prefix == "corral.t.acme.inbox"


def test_the_deployments_own_subjects_are_unchanged():
    assert Subjects().action("S1", "cmd_run") == "corral.session.S1.action.cmd_run"
    assert Subjects().ctl("create") == "corral.ctl.create"


def test_worker_subjects_are_never_tenant_scoped():
    assert Subjects("corral", "acme").worker("w1", "create") == Subjects().worker("w1", "create")


def test_the_wildcard_tenant_covers_every_tenant():
    every = Subjects().for_tenant("*")
    assert every.ctl("create") == "corral.t.*.ctl.create"
    assert every.actions() == "corral.t.*.session.*.action.>"


def test_the_stream_captures_both_kinds_of_session():
    assert Subjects().stream_subjects == ["corral.session.>", "corral.t.*.session.>"]


def test_tenant_of_a_subject():
    assert Subjects().tenant_of("corral.t.acme.session.S1.status") == "acme"
    assert Subjects().tenant_of("corral.session.S1.status") == ""
    assert Subjects().tenant_of("other.session.S1.status") is None


def test_parsing_accepts_only_the_tenant_a_subjects_object_names():
    subject = Subjects("corral", "acme").obs("S1", "cmd_output")
    assert Subjects().parse_session_subject(subject) == ("S1", "obs", "cmd_output")
    assert Subjects("corral", "acme").parse_session_subject(subject) == ("S1", "obs", "cmd_output")
    assert Subjects("corral", "other").parse_session_subject(subject) is None
    assert Subjects("corral", "acme").action_kind("corral.t.acme.session.S1.action.file_read") == "file_read"


def test_tenant_names_are_one_plain_token():
    assert TENANT_NAME.fullmatch("acme-2_x")
    for bad in ("", "a.b", "*", ">", "Acme", "a b", "x" * 33):
        assert not TENANT_NAME.fullmatch(bad)
