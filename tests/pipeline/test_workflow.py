"""The case workflow: every allowed move, and the forbidden ones."""

from __future__ import annotations

import pytest

from pipeline.workflow import (
    ALLOWED,
    Action,
    Role,
    Status,
    TransitionError,
    available_actions,
    transition,
)

HAPPY_PATH = [
    (Action.score, Role.system, Status.scored),
    (Action.start_review, Role.first_reader, Status.in_review),
    (Action.request_info, Role.first_reader, Status.info_requested),
    (Action.answer, Role.requester, Status.answered),
    (Action.request_info, Role.first_reader, Status.info_requested),
    (Action.answer, Role.requester, Status.answered),
    (Action.write_report, Role.first_reader, Status.report_written),
    (Action.validate, Role.senior, Status.validated),
    (Action.close, Role.requester, Status.closed),
]


def test_the_whole_life_of_a_case() -> None:
    status = Status.submitted
    for action, role, expected in HAPPY_PATH:
        status = transition(status, action, role, actor_id="someone", report_author_id="author")
        assert status is expected


def test_an_expert_may_read_a_case_the_model_has_not_scored() -> None:
    assert transition(Status.submitted, Action.start_review, Role.senior) is Status.in_review


def test_a_senior_may_send_a_report_back_and_the_reader_rewrite_it() -> None:
    status = transition(Status.report_written, Action.return_for_revision, Role.senior)
    assert status is Status.in_review
    assert transition(status, Action.write_report, Role.first_reader) is Status.report_written


def test_a_report_may_be_revised_before_validation() -> None:
    assert (
        transition(Status.report_written, Action.write_report, Role.first_reader)
        is Status.report_written
    )


def test_a_senior_cannot_validate_their_own_report() -> None:
    with pytest.raises(TransitionError) as info:
        transition(
            Status.report_written,
            Action.validate,
            Role.senior,
            actor_id="s1",
            report_author_id="s1",
        )
    assert info.value.code == "same_author"
    assert (
        transition(
            Status.report_written,
            Action.validate,
            Role.senior,
            actor_id="s2",
            report_author_id="s1",
        )
        is Status.validated
    )


@pytest.mark.parametrize(
    ("status", "action", "role"),
    [
        (Status.report_written, Action.validate, Role.first_reader),
        (Status.scored, Action.start_review, Role.requester),
        (Status.in_review, Action.write_report, Role.requester),
        (Status.info_requested, Action.answer, Role.first_reader),
        (Status.submitted, Action.score, Role.senior),
        (Status.validated, Action.close, Role.first_reader),
        (Status.scored, Action.start_review, Role.auditor),
        (Status.scored, Action.start_review, Role.data_scientist),
    ],
)
def test_a_role_outside_the_rule_is_refused(status: Status, action: Action, role: Role) -> None:
    with pytest.raises(TransitionError) as info:
        transition(status, action, role)
    assert info.value.code == "forbidden_role"


@pytest.mark.parametrize(
    ("status", "action", "role"),
    [
        (Status.scored, Action.score, Role.system),  # scored twice
        (Status.in_review, Action.score, Role.system),  # a late score moves nothing
        (Status.submitted, Action.write_report, Role.first_reader),  # no report unread
        (Status.scored, Action.validate, Role.senior),
        (Status.in_review, Action.answer, Role.requester),  # nothing was asked
        (Status.info_requested, Action.write_report, Role.first_reader),  # wait for the answer
        (Status.report_written, Action.close, Role.requester),  # not validated yet
        (Status.closed, Action.start_review, Role.senior),
        (Status.closed, Action.request_info, Role.senior),
        (Status.validated, Action.write_report, Role.senior),  # a validated report is frozen
    ],
)
def test_an_action_in_the_wrong_state_is_refused(
    status: Status, action: Action, role: Role
) -> None:
    with pytest.raises(TransitionError) as info:
        transition(status, action, role)
    assert info.value.code == "bad_state"


def test_every_state_but_closed_can_be_left() -> None:
    sources = set().union(*(rule.sources for rule in ALLOWED.values()))
    assert sources == set(Status) - {Status.closed}


def test_every_state_but_submitted_can_be_reached() -> None:
    targets = {rule.target for rule in ALLOWED.values()}
    assert targets == set(Status) - {Status.submitted}


def test_available_actions_follow_the_rules() -> None:
    assert available_actions(Status.scored, Role.first_reader) == [Action.start_review]
    assert available_actions(Status.answered, Role.first_reader) == [
        Action.request_info,
        Action.write_report,
    ]
    assert available_actions(Status.report_written, Role.senior) == [
        Action.write_report,
        Action.return_for_revision,
        Action.validate,
    ]
    assert available_actions(Status.info_requested, Role.requester) == [Action.answer]
    assert available_actions(Status.scored, Role.auditor) == []
