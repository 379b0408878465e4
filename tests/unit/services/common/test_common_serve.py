"""Where a service listens: its own variable, else Cloud Run's PORT, else its default."""

from __future__ import annotations

import pytest

from services.common.serve import int_variable, listen_address
from services.common.settings import SettingsError

pytestmark = pytest.mark.unit


def test_the_default_when_nothing_is_set() -> None:
    assert listen_address("crm", 8081, environ={}) == ("0.0.0.0", 8081)


def test_cloud_runs_port_is_used_when_the_service_has_no_variable_of_its_own() -> None:
    assert listen_address("crm", 8081, environ={"PORT": "8080"}) == ("0.0.0.0", 8080)


def test_the_services_own_variables_win() -> None:
    env = {"PORT": "8080", "XYNERGY_CRM_PORT": "9001", "XYNERGY_CRM_HOST": "127.0.0.1"}
    assert listen_address("crm", 8081, environ=env) == ("127.0.0.1", 9001)
    env = {"XYNERGY_INTERNAL_AI_PORT": "9002"}
    assert listen_address("internal_ai", 8084, environ=env) == ("0.0.0.0", 9002)


def test_an_empty_variable_counts_as_unset() -> None:
    assert listen_address("crm", 8081, environ={"XYNERGY_CRM_PORT": " ", "PORT": "7000"})[1] == 7000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "99999"}, "PORT: expected a TCP port (1-65535), got '99999'"),
        ({"PORT": "0"}, "PORT: expected a TCP port (1-65535), got '0'"),
        ({"XYNERGY_CRM_PORT": "http", "PORT": "8080"}, "XYNERGY_CRM_PORT: expected a TCP port"),
    ],
)
def test_a_value_that_is_not_a_port_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        listen_address("crm", 8081, environ=env)
    assert str(caught.value).startswith(named)


def test_int_variable_bounds() -> None:
    names = ("XYNERGY_GATEWAY_WORKERS",)
    assert int_variable(names, 1, low=1, high=64, what="workers", environ={}) == 1
    env = {"XYNERGY_GATEWAY_WORKERS": "4"}
    assert int_variable(names, 1, low=1, high=64, what="workers", environ=env) == 4
    with pytest.raises(SettingsError, match="XYNERGY_GATEWAY_WORKERS: expected workers"):
        int_variable(names, 1, low=1, high=64, what="workers", environ={names[0]: "-2"})


def test_a_settings_classs_error_names_its_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from services.common.settings import settings_error
    from services.slack.settings import SlackSettings

    monkeypatch.setenv("XYNERGY_SLACK_TEAMS_CACHE_SECONDS", "-57")
    with pytest.raises(ValidationError) as err:
        SlackSettings()
    problem = settings_error(err.value)
    assert problem is not None
    assert str(problem).startswith("XYNERGY_SLACK_TEAMS_CACHE_SECONDS: Input should be greater")
    assert "-57" not in str(problem)


def test_an_error_about_anything_but_settings_is_left_alone() -> None:
    from pydantic import BaseModel, ValidationError

    from services.common.settings import settings_error

    class Body(BaseModel):
        count: int

    with pytest.raises(ValidationError) as err:
        Body(count="many")  # type: ignore[arg-type]
    assert settings_error(err.value) is None
