"""Every command carries an idempotency key; posting it again returns the first result and changes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line, PostDocument, PostResult, ReverseDocument
from edge.ledger.posting import PostingContext, post
from tests.edge.ledger.sample_store import context, dump, fresh_ledger, post_committed

Post = Callable[..., PostResult]
FIELDS = ("key", "ok", "code", "message", "message_en", "document_id", "doc_no", "detail")


def same_result(a: PostResult, b: PostResult) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in FIELDS)


def test_posting_the_same_command_again_returns_the_first_result_and_changes_nothing(
    conn: sqlite3.Connection, posted: Post
) -> None:
    command = PostDocument("pos-1/0001", DocType.RECEIPT, (Line("A1", 24, price_fen=200),), device="pos-1")
    first = posted(command)
    before = dump(conn)
    again = posted(command)
    assert first.ok and not first.replayed
    assert again.replayed and same_result(again, first)
    assert dump(conn) == before


def test_a_refusal_is_replayed_too_even_after_the_cause_is_gone(conn: sqlite3.Connection, posted: Post) -> None:
    oversell = PostDocument("pos-1/0002", DocType.SALE, (Line("A1", 5),))
    first = posted(oversell)
    assert first.code == "insufficient_stock"
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 24),)))
    before = dump(conn)
    again = posted(oversell)
    assert again.replayed and same_result(again, first)
    assert dump(conn) == before


def test_the_same_key_with_another_payload_is_refused_and_changes_nothing(
    conn: sqlite3.Connection, posted: Post
) -> None:
    first = posted(PostDocument("pos-1/0003", DocType.RECEIPT, (Line("A1", 24),)))
    before = dump(conn)
    for other in (
        PostDocument("pos-1/0003", DocType.RECEIPT, (Line("A1", 25),)),
        PostDocument("pos-1/0003", DocType.SALE, (Line("A1", 24),)),
        PostDocument("pos-1/0003", DocType.RECEIPT, (Line("A1", 24),), device="pos-2"),
        ReverseDocument("pos-1/0003", first.document_id or 0),
    ):
        result = posted(other)
        assert (result.ok, result.code, result.detail) == (False, "idempotency_key_reused", {"key": "pos-1/0003"})
        assert result.message and result.message_en and not result.replayed
    assert dump(conn) == before
    assert same_result(posted(PostDocument("pos-1/0003", DocType.RECEIPT, (Line("A1", 24),))), first)


def test_a_reversal_replayed_does_not_reverse_twice(conn: sqlite3.Connection, posted: Post) -> None:
    receipt = posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 24),)))
    first = posted(ReverseDocument("rv-1", receipt.document_id))
    before = dump(conn)
    assert same_result(posted(ReverseDocument("rv-1", receipt.document_id)), first)
    assert dump(conn) == before


def test_a_key_repeated_within_one_group_commit_posts_once(conn: sqlite3.Connection, ctx: PostingContext) -> None:
    command = PostDocument("pos-1/0004", DocType.RECEIPT, (Line("A1", 6),))
    conn.execute("BEGIN IMMEDIATE")
    first = post(conn, command, ctx)
    second = post(conn, command, ctx)
    conn.execute("COMMIT")
    assert second.replayed and same_result(first, second)
    assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 1


commands = st.lists(
    st.builds(
        PostDocument,
        key=st.sampled_from([f"k{i}" for i in range(8)]),
        type=st.sampled_from([DocType.RECEIPT, DocType.SALE, DocType.WRITE_OFF]),
        lines=st.tuples(st.builds(Line, code=st.sampled_from(["A1", "E1"]), qty=st.integers(1, 9))),
        reason=st.sampled_from(["damaged", None]),
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=40, deadline=None)
@given(commands, st.data())
def test_resending_any_commands_in_any_order_ends_in_the_ledger_of_sending_each_once(
    sent: list[PostDocument], data: st.DataObject
) -> None:
    """A terminal resends what it had no answer for: the ledger ends as if each key had come once."""
    ctx = context()
    with fresh_ledger() as once, fresh_ledger() as twice:
        firsts: dict[str, PostResult] = {}
        for command in sent:
            result = post_committed(once, command, ctx)
            firsts.setdefault(command.key, result)
        answered: dict[str, PostResult] = {}
        resends = data.draw(st.lists(st.sampled_from(sent), max_size=10), label="resends")
        for command in [*sent, *resends]:
            result = post_committed(twice, command, ctx)
            first = answered.setdefault(command.key, result)
            original = next(c for c in sent if c.key == command.key)
            if result is not first:
                if command == original:
                    assert result.replayed and same_result(result, first)
                else:
                    assert result.code == "idempotency_key_reused"
        assert dump(twice) == dump(once)
        assert {k: r.to_dict() for k, r in answered.items()} == {k: r.to_dict() for k, r in firsts.items()}
