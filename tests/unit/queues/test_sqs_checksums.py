"""SQS's MD5 digests, checked against AWS's published example and against moto's independent
implementation (SDKs other than boto3 refuse a response whose digests differ)."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from moto.sqs.models import Message

from app.queues.sqs.checksums import md5_of_attributes, md5_of_body

names = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
strings = st.text(min_size=1, max_size=50).filter(lambda s: "\x00" not in s)


def moto_md5(attributes: dict[str, dict[str, Any]]) -> str:
    message = Message("id", "body")
    message.message_attributes = {
        name: (
            {"DataType": v["DataType"], "BinaryValue": base64.b64decode(v["BinaryValue"])}
            if "BinaryValue" in v
            else v
        )
        for name, v in attributes.items()
    }
    return str(message.attribute_md5)


def test_body_digest_is_the_md5_of_its_utf8_bytes() -> None:
    assert md5_of_body("hello") == "5d41402abc4b2a76b9719d911017c592"
    assert md5_of_body("é") == "66ddcd97cfdeabb2f6fb8a999b4bc76f"  # md5(b"\xc3\xa9")


def test_no_attributes_have_no_digest() -> None:
    assert md5_of_attributes({}) is None


@given(
    st.dictionaries(
        names,
        st.one_of(
            st.builds(lambda v: {"DataType": "String", "StringValue": v}, strings),
            st.builds(lambda v: {"DataType": "Number", "StringValue": str(v)}, st.integers()),
            st.builds(
                lambda v: {"DataType": "Binary", "BinaryValue": base64.b64encode(v).decode()},
                st.binary(min_size=1, max_size=40),
            ),
            st.builds(lambda v: {"DataType": "String.custom", "StringValue": v}, strings),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_attribute_digest_agrees_with_moto(attributes: dict[str, dict[str, Any]]) -> None:
    assert md5_of_attributes(attributes) == moto_md5(attributes)


def test_attribute_digest_does_not_depend_on_the_order_given() -> None:
    a = {
        "b": {"DataType": "String", "StringValue": "2"},
        "a": {"DataType": "Number", "StringValue": "1"},
    }
    assert md5_of_attributes(a) == md5_of_attributes(dict(reversed(list(a.items()))))
