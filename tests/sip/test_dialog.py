"""Tests for switch.sip.dialog: dialog state, route sets, CSeq rules (RFC 3261 12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.sip.dialog import (
    DIALOG_TRANSITIONS,
    Dialog,
    DialogId,
    DialogInput,
    Dialogs,
    DialogState,
    is_loose_router,
    next_hop_uri,
)
from switch.sip.errors import LocalProtocolError, ProtocolError
from switch.sip.headers import parse_name_addr, parse_via
from switch.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    parse_message,
)
from switch.sip.uri import SipUri, parse_uri

D = DialogState
CONTACT = parse_name_addr("<sip:b2bua@10.0.0.1:5060>")


def request(
    method: str = "INVITE",
    *,
    uri: str = "sip:bob@biloxi.example",
    to_tag: str | None = None,
    from_tag: str | None = "alicetag",
    cseq: int = 1,
    contact: str | None = "<sip:alice@192.0.2.1:5062>",
    record_route: tuple[str, ...] = (),
    call_id: str = "dialog-call",
) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKdlg",
        "Max-Forwards: 70",
        'From: "Alice" <sip:alice@atlanta.example>'
        + (f";tag={from_tag}" if from_tag else ""),
        "To: <sip:bob@biloxi.example>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *(f"Record-Route: {value}" for value in record_route),
        *([f"Contact: {contact}"] if contact else []),
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def response(
    req: Request,
    status: int,
    *,
    to_tag: str | None = "bobtag",
    contact: str | None = "<sip:bob@198.51.100.2:5060>",
    record_route: tuple[str, ...] = (),
) -> Response:
    built = make_response(req, status, to_tag=to_tag)
    built.headers.remove("Record-Route")
    for value in record_route:
        built.headers.add("Record-Route", value)
    if contact:
        built.headers.add("Contact", contact)
    message = parse_message(built.to_bytes())
    assert isinstance(message, Response)
    return message


def state_of(dialog: Dialog) -> DialogState:
    """The state, read through a call so mypy does not keep an earlier narrowing."""
    return dialog.state


def wire(req: Request) -> Request:
    """The request as the peer reads it (proves it renders and parses)."""
    message = parse_message(req.to_bytes())
    assert isinstance(message, Request)
    return message


PROXIES = ("<sip:p1.example;lr>", "<sip:p2.example;lr>")


def uac_dialog(*, record_route: tuple[str, ...] = PROXIES, status: int = 200) -> Dialog:
    invite = request(cseq=10)
    return Dialog.from_uac(
        invite,
        response(invite, status, record_route=record_route),
        local_contact=CONTACT,
    )


# --- UAC creation (12.1.2) ------------------------------------------------------------


def test_uac_early_dialog_from_a_tagged_provisional() -> None:
    invite = request(cseq=10)
    ringing = response(invite, 180, record_route=PROXIES)
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.state is D.EARLY
    assert dialog.id == DialogId("dialog-call", "alicetag", "bobtag")
    # Route set: Record-Route reversed on the UAC side.
    assert [str(route) for route in dialog.route_set] == [
        "<sip:p2.example;lr>",
        "<sip:p1.example;lr>",
    ]
    assert str(dialog.remote_target) == "sip:bob@198.51.100.2:5060"
    assert dialog.local_seq == 10
    assert dialog.remote_seq is None
    assert str(dialog.local_uri) == '"Alice" <sip:alice@atlanta.example>'
    assert str(dialog.remote_uri) == "<sip:bob@biloxi.example>"
    assert dialog.secure is False
    assert dialog.local_contact is None


def test_uac_confirmed_dialog_from_a_2xx() -> None:
    dialog = uac_dialog()
    assert dialog.state is D.CONFIRMED
    assert dialog.local_contact == CONTACT


def test_uac_secure_flag_defaults_to_the_sips_request_uri() -> None:
    invite = request(uri="sips:bob@biloxi.example")
    assert Dialog.from_uac(invite, response(invite, 200)).secure is True
    assert Dialog.from_uac(invite, response(invite, 200), secure=False).secure is False
    tel = request(uri="tel:+15551234")
    assert Dialog.from_uac(tel, response(tel, 200)).secure is False


def test_uac_provisional_without_contact_keeps_the_request_uri() -> None:
    invite = request()
    dialog = Dialog.from_uac(invite, response(invite, 183, contact=None))
    assert str(dialog.remote_target) == "sip:bob@biloxi.example"


@pytest.mark.parametrize(
    ("status", "to_tag", "contact", "message"),
    [
        (180, None, "<sip:b@h>", "no To tag"),
        (100, "t", "<sip:b@h>", "100 response cannot create"),
        (486, "t", "<sip:b@h>", "486 response cannot create"),
        (200, "t", None, "2xx creating a dialog has no Contact"),
    ],
)
def test_uac_creation_refuses(
    status: int, to_tag: str | None, contact: str | None, message: str
) -> None:
    invite = request()
    with pytest.raises(ProtocolError, match=message):
        Dialog.from_uac(
            invite, response(invite, status, to_tag=to_tag, contact=contact)
        )


def test_uac_early_dialog_confirmed_by_2xx_recomputes_the_route_set() -> None:
    invite = request(cseq=10)
    dialog = Dialog.from_uac(invite, response(invite, 180, record_route=PROXIES))
    ok = response(
        invite,
        200,
        record_route=("<sip:p9.example;lr>",),
        contact="<sip:bob@198.51.100.9>",
    )
    dialog.receive_response(invite, ok)
    assert dialog.state is D.CONFIRMED
    assert [str(route) for route in dialog.route_set] == ["<sip:p9.example;lr>"]
    assert str(dialog.remote_target) == "sip:bob@198.51.100.9"
    # A retransmitted 2xx changes nothing.
    dialog.receive_response(invite, ok)
    assert dialog.state is D.CONFIRMED


def test_uac_early_dialog_ends_on_a_non_2xx_final() -> None:
    invite = request()
    dialog = Dialog.from_uac(invite, response(invite, 180))
    dialog.receive_response(invite, response(invite, 180))
    assert dialog.state is D.EARLY
    dialog.receive_response(invite, response(invite, 486))
    assert state_of(dialog) is D.TERMINATED


# --- UAS creation (12.1.1) ------------------------------------------------------------


def test_uas_dialog_from_the_request() -> None:
    invite = request(cseq=314, record_route=PROXIES)
    dialog = Dialog.from_uas(invite, local_tag="mytag", local_contact=CONTACT)
    assert dialog.state is D.CONFIRMED
    assert dialog.id == DialogId("dialog-call", "mytag", "alicetag")
    # Route set: Record-Route in order on the UAS side.
    assert [str(route) for route in dialog.route_set] == list(PROXIES)
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5062"
    assert dialog.remote_seq == 314
    assert dialog.local_seq is None
    assert str(dialog.local_uri) == "<sip:bob@biloxi.example>"
    assert str(dialog.remote_uri) == '"Alice" <sip:alice@atlanta.example>'
    answer = make_response(invite, 200, to_tag=dialog.id.local_tag)
    assert answer.to.tag == "mytag"


def test_uas_early_dialog_confirmed_by_its_2xx() -> None:
    dialog = Dialog.from_uas(request(), early=True, secure=True)
    assert dialog.state is D.EARLY
    assert dialog.secure is True
    assert len(dialog.id.local_tag) >= 8  # a fresh random tag
    dialog.confirm()
    assert state_of(dialog) is D.CONFIRMED


def test_uas_rfc_2543_peer_without_from_tag() -> None:
    dialog = Dialog.from_uas(request(from_tag=None), local_tag="t")
    assert dialog.id.remote_tag == ""
    bye = dialog.create_request("BYE")
    assert bye.to.tag is None
    registry = Dialogs()
    registry.add(dialog)
    assert registry.match(request("BYE", from_tag=None, to_tag="t", cseq=2)) is dialog


def test_uas_creation_needs_a_contact() -> None:
    with pytest.raises(ProtocolError, match="no Contact"):
        Dialog.from_uas(request(contact=None))


# --- building requests (12.2.1.1) -----------------------------------------------------


def test_create_request_with_loose_routes() -> None:
    dialog = uac_dialog()
    bye = wire(dialog.create_request("BYE"))
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:bob@198.51.100.2:5060"
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example;lr>",
        "<sip:p1.example;lr>",
    ]
    assert bye.from_.tag == "alicetag"
    assert bye.to.tag == "bobtag"
    assert bye.from_.display_name == "Alice"
    assert bye.call_id == "dialog-call"
    assert str(bye.cseq) == "11 BYE"
    assert bye.max_forwards == 70
    assert "Contact" not in bye.headers  # BYE is no target refresh
    assert "Via" not in bye.headers
    assert dialog.local_seq == 11
    assert next_hop_uri(bye) == parse_uri("sip:p2.example;lr")


def test_create_request_target_refresh_carries_contact_and_body() -> None:
    dialog = uac_dialog()
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKreinvite")
    reinvite = wire(
        dialog.create_request(
            "INVITE",
            body=b"v=0\r\n",
            content_type="application/sdp",
            headers=[("Supported", "timer"), ("X-Queue", "sales")],
            via=via,
        )
    )
    assert reinvite.top_via.branch == "z9hG4bKreinvite"
    assert reinvite.contacts == [CONTACT]
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert reinvite.body == b"v=0\r\n"
    assert reinvite.headers.get("X-Queue") == "sales"
    assert str(reinvite.cseq) == "11 INVITE"
    info = wire(dialog.create_request("INFO"))
    assert str(info.cseq) == "12 INFO"


def test_create_request_with_a_strict_router() -> None:
    dialog = uac_dialog(
        record_route=(
            "<sip:p1.example;lr>",
            "<sip:strict.example;method=INVITE;maddr=x>",
        )
    )
    # Reversed: the strict router is first.
    assert not is_loose_router(dialog.route_set[0])
    bye = wire(dialog.create_request("BYE"))
    # Its URI becomes the Request-URI, minus the parameters a Request-URI may not hold.
    assert str(bye.uri) == "sip:strict.example;maddr=x"
    # The remaining routes, then the remote target, as Route.
    assert bye.headers.get_all("Route") == [
        "<sip:p1.example;lr>",
        "<sip:bob@198.51.100.2:5060>",
    ]
    assert next_hop_uri(bye) == parse_uri("sip:p1.example;lr")
    # The route set itself is untouched.
    first = dialog.route_set[0].uri
    assert isinstance(first, SipUri)
    assert first.params == {"method": "INVITE", "maddr": "x"}


def test_strict_router_uri_headers_are_stripped() -> None:
    dialog = uac_dialog(record_route=("<sip:strict.example?Subject=x>",))
    assert str(dialog.create_request("BYE").uri) == "sip:strict.example"


def test_create_request_without_route_set() -> None:
    dialog = uac_dialog(record_route=())
    bye = wire(dialog.create_request("BYE"))
    assert "Route" not in bye.headers
    assert next_hop_uri(bye) == parse_uri("sip:bob@198.51.100.2:5060")


def test_non_sip_route_is_a_strict_router() -> None:
    dialog = uac_dialog(record_route=())
    dialog.route_set = [parse_name_addr("<tel:+15551234>")]
    assert not is_loose_router(dialog.route_set[0])
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "tel:+15551234"


def test_uas_local_sequence_starts_at_random_then_increments() -> None:
    dialog = Dialog.from_uas(request(), local_tag="t")
    first = dialog.create_request("BYE").cseq.number
    assert 0 <= first < 2**31
    assert dialog.create_request("INFO").cseq.number == first + 1


def test_local_sequence_stays_within_32_bits() -> None:
    dialog = uac_dialog()
    dialog.local_seq = 2**32 - 1
    with pytest.raises(LocalProtocolError, match="32 bits"):
        dialog.create_request("BYE")


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_create_request_refuses_ack_and_cancel(method: str) -> None:
    with pytest.raises(LocalProtocolError, match="takes no new CSeq"):
        uac_dialog().create_request(method)


def test_create_request_refuses_a_body_without_type() -> None:
    with pytest.raises(LocalProtocolError, match="Content-Type"):
        uac_dialog().create_request("INFO", body=b"x")


def test_create_request_refuses_a_terminated_dialog() -> None:
    dialog = uac_dialog()
    dialog.terminate()
    with pytest.raises(LocalProtocolError, match="terminated dialog"):
        dialog.create_request("BYE")


def test_create_ack_uses_the_invite_cseq() -> None:
    dialog = uac_dialog()
    reinvite = dialog.create_request("INVITE")
    dialog.create_request("INFO")
    ack = wire(
        dialog.create_ack(
            reinvite.cseq.number,
            body=b"v=0\r\n",
            content_type="application/sdp",
            headers=[("Proxy-Authorization", 'Digest username="a"')],
        )
    )
    assert str(ack.cseq) == "11 ACK"
    assert dialog.local_seq == 12
    assert ack.headers.get_all("Route") == [
        "<sip:p2.example;lr>",
        "<sip:p1.example;lr>",
    ]
    assert "Contact" not in ack.headers
    assert ack.headers.get("Proxy-Authorization") == 'Digest username="a"'


def test_building_requests_leaves_the_dialog_addresses_as_they_were() -> None:
    # From and To are rendered from the dialog's own addresses (not copies of them):
    # the tags must reach the wire and never the dialog, nor one request the next.
    dialog = uac_dialog()
    local, remote = str(dialog.local_uri), str(dialog.remote_uri)
    first = wire(dialog.create_request("INFO"))
    second = wire(dialog.create_request("INFO"))
    for built in (first, second):
        assert (
            built.headers.get("From")
            == '"Alice" <sip:alice@atlanta.example>;tag=alicetag'
        )
        assert built.headers.get("To") == "<sip:bob@biloxi.example>;tag=bobtag"
    assert (str(dialog.local_uri), str(dialog.remote_uri)) == (local, remote)
    assert "tag" not in dialog.local_uri.params
    assert "tag" not in dialog.remote_uri.params
    # The Request-URI is the request's own: changing it leaves the dialog alone.
    assert isinstance(first.uri, SipUri)
    built = dialog.create_request("INFO")
    assert isinstance(built.uri, SipUri)
    built.uri.params["changed"] = "yes"
    assert "changed" not in str(dialog.remote_target)


def test_dialog_requests_carry_the_dialog_lines_in_order() -> None:
    # The Max-Forwards, From, To and Call-ID lines (From and To rendered once per
    # dialog): the headers are what Headers.add builds, in RFC 3261 12.2.1.1 order.
    dialog = uac_dialog()
    for built in (
        dialog.create_request("INFO", headers=[("Subject", "x")]),
        dialog.create_ack(10, via=parse_via("SIP/2.0/UDP h:5060;branch=z9hG4bKa")),
    ):
        assert built.headers == Headers(list(built.headers))
    bye = dialog.create_request("BYE")
    expected = Headers(
        [
            ("Max-Forwards", "70"),
            ("Route", "<sip:p2.example;lr>"),
            ("Route", "<sip:p1.example;lr>"),
            ("From", '"Alice" <sip:alice@atlanta.example>;tag=alicetag'),
            ("To", "<sip:bob@biloxi.example>;tag=bobtag"),
            ("Call-ID", "dialog-call"),
            ("CSeq", f"{dialog.local_seq} BYE"),
        ]
    )
    assert bye.headers == expected


def test_dialog_requests_follow_a_replaced_address_or_id() -> None:
    dialog = uac_dialog()
    dialog.create_request("INFO")
    dialog.remote_uri = parse_name_addr("<sip:carol@chicago.example>")
    dialog.id = DialogId("other-call", "alicetag", "caroltag")
    info = wire(dialog.create_request("INFO"))
    assert info.headers.get("To") == "<sip:carol@chicago.example>;tag=caroltag"
    assert info.call_id == "other-call"
    dialog.local_uri = parse_name_addr("<sip:alice@example.org>")
    info = wire(dialog.create_request("INFO"))
    assert info.headers.get("From") == "<sip:alice@example.org>;tag=alicetag"
    # They are checked as Headers.add checks a line: no header injection.
    dialog.id = DialogId("bad\r\nX-Injected: 1", "alicetag", "caroltag")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO")


def test_rfc_2543_peer_without_tag_gets_an_untagged_to() -> None:
    invite = request(from_tag=None)
    dialog = Dialog.from_uas(invite, local_tag="mytag", local_contact=CONTACT)
    bye = wire(dialog.create_request("BYE"))
    assert bye.headers.get("To") == '"Alice" <sip:alice@atlanta.example>'
    assert bye.headers.get("From") == "<sip:bob@biloxi.example>;tag=mytag"


# --- receiving requests (12.2.2) ------------------------------------------------------


def test_remote_cseq_rules() -> None:
    dialog = Dialog.from_uas(request(cseq=5), local_tag="t")
    dialog.receive_request(request("INFO", to_tag="t", cseq=6, contact=None))
    assert dialog.remote_seq == 6
    # Equal (a new request reusing the number) is let through; the transaction
    # layer absorbs true retransmissions before they get here.
    dialog.receive_request(request("INFO", to_tag="t", cseq=6, contact=None))
    with pytest.raises(ProtocolError) as caught:
        dialog.receive_request(request("BYE", to_tag="t", cseq=4, contact=None))
    assert caught.value.status == 500
    assert "lower" in caught.value.reason
    assert dialog.remote_seq == 6
    # ACK and CANCEL carry the number of the request they go with.
    dialog.receive_request(request("ACK", to_tag="t", cseq=5, contact=None))
    dialog.receive_request(request("CANCEL", to_tag="t", cseq=5, contact=None))
    assert dialog.remote_seq == 6


def test_uac_side_learns_the_remote_sequence() -> None:
    dialog = uac_dialog()
    assert dialog.remote_seq is None
    dialog.receive_request(request("BYE", cseq=77, contact=None))
    assert dialog.remote_seq == 77


def test_target_refresh_on_received_requests() -> None:
    dialog = Dialog.from_uas(request(), local_tag="t")
    dialog.receive_request(request("INFO", to_tag="t", cseq=2, contact="<sip:x@h1>"))
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5062"
    dialog.receive_request(request("INVITE", to_tag="t", cseq=3, contact="<sip:x@h2>"))
    assert str(dialog.remote_target) == "sip:x@h2"
    dialog.receive_request(request("UPDATE", to_tag="t", cseq=4, contact="<sip:x@h3>"))
    assert str(dialog.remote_target) == "sip:x@h3"
    dialog.receive_request(request("INVITE", to_tag="t", cseq=5, contact=None))
    assert str(dialog.remote_target) == "sip:x@h3"
    # A rejected (out of order) refresh changes nothing.
    with pytest.raises(ProtocolError):
        dialog.receive_request(
            request("UPDATE", to_tag="t", cseq=1, contact="<sip:x@h4>")
        )
    assert str(dialog.remote_target) == "sip:x@h3"


def test_target_refresh_on_2xx_to_reinvite() -> None:
    dialog = uac_dialog()
    reinvite = dialog.create_request("INVITE")
    dialog.receive_response(reinvite, response(reinvite, 180, contact="<sip:b@early>"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.2:5060"
    dialog.receive_response(reinvite, response(reinvite, 491, contact="<sip:b@no>"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.2:5060"
    assert dialog.state is D.CONFIRMED
    dialog.receive_response(reinvite, response(reinvite, 200, contact="<sip:b@moved>"))
    assert str(dialog.remote_target) == "sip:b@moved"
    info = dialog.create_request("INFO")
    dialog.receive_response(info, response(info, 200, contact="<sip:b@ignored>"))
    assert str(dialog.remote_target) == "sip:b@moved"
    update = dialog.create_request("UPDATE")
    dialog.receive_response(update, response(update, 200, contact=None))
    assert str(dialog.remote_target) == "sip:b@moved"


@pytest.mark.parametrize("status", [408, 481])
def test_408_and_481_end_the_dialog(status: int) -> None:
    dialog = uac_dialog()
    info = dialog.create_request("INFO")
    dialog.receive_response(info, response(info, status))
    assert dialog.state is D.TERMINATED


# --- the dialog state table -----------------------------------------------------------


@pytest.mark.parametrize("state", list(DialogState))
@pytest.mark.parametrize("event", list(DialogInput))
def test_every_dialog_state_input_pair(state: DialogState, event: DialogInput) -> None:
    dialog = uac_dialog()
    dialog.state = state
    expected = DIALOG_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(LocalProtocolError, match="cannot take"):
            dialog.process(event)
        assert dialog.state is D.TERMINATED
    else:
        dialog.process(event)
        assert dialog.state is expected


@given(events=st.lists(st.sampled_from(list(DialogInput)), max_size=10))
def test_dialog_table_property(events: list[DialogInput]) -> None:
    """Any input sequence leaves a valid state, or our error and Terminated."""
    invite = request()
    dialog = Dialog.from_uac(invite, response(invite, 180))
    for event in events:
        before = dialog.state
        try:
            dialog.process(event)
        except LocalProtocolError:
            assert (before, event) not in DIALOG_TRANSITIONS
            assert dialog.state is D.TERMINATED
        else:
            assert dialog.state is DIALOG_TRANSITIONS[(before, event)]


def test_confirm_after_terminate_is_our_error() -> None:
    dialog = uac_dialog()
    dialog.terminate()
    dialog.terminate()
    with pytest.raises(LocalProtocolError, match="terminated dialog cannot take"):
        dialog.confirm()


# --- the registry ---------------------------------------------------------------------


def test_registry_add_get_remove() -> None:
    registry = Dialogs()
    dialog = uac_dialog()
    registry.add(dialog)
    assert len(registry) == 1
    assert dialog.id in registry
    assert list(registry) == [dialog]
    assert registry.get(dialog.id) is dialog
    with pytest.raises(LocalProtocolError, match="already exists"):
        registry.add(dialog)
    assert registry.remove(dialog.id) is dialog
    assert registry.remove(dialog.id) is None
    assert registry.get(dialog.id) is None
    assert "not an id" not in registry


def test_registry_matches_requests_and_responses() -> None:
    registry = Dialogs()
    uas = Dialog.from_uas(request(call_id="in"), local_tag="ours")
    uac = uac_dialog()
    registry.add(uas)
    registry.add(uac)
    # Received request: To tag is ours, From tag theirs.
    assert registry.match(request("BYE", call_id="in", to_tag="ours", cseq=2)) is uas
    assert registry.match(request("BYE", call_id="in", to_tag="other", cseq=2)) is None
    assert registry.match(request("INVITE", call_id="in")) is None
    # Request from the UAC dialog's peer: its From tag is bobtag, To tag alicetag.
    bye = request("BYE", to_tag="alicetag", from_tag="bobtag", cseq=1)
    assert registry.match(bye) is uac
    # Response to our request: From tag ours, To tag theirs.
    info = uac.create_request("INFO")
    assert registry.match_response(response(info, 200)) is uac
    assert registry.match_response(response(request(), 100, to_tag=None)) is None
    assert registry.match_response(response(request(), 200, to_tag="fork2")) is None


def test_registry_answers_481_for_unknown_in_dialog_requests() -> None:
    registry = Dialogs()
    dialog = Dialog.from_uas(request(), local_tag="ours")
    registry.add(dialog)
    assert registry.match_in_dialog(request("BYE", to_tag="ours", cseq=2)) is dialog
    assert registry.match_in_dialog(request("INVITE")) is None
    with pytest.raises(ProtocolError) as caught:
        registry.match_in_dialog(request("BYE", to_tag="gone", cseq=2))
    assert caught.value.status == 481
    assert caught.value.reason == "Call/Transaction Does Not Exist"
    # An ACK is never answered: no dialog, no error.
    assert registry.match_in_dialog(request("ACK", to_tag="gone")) is None


def test_next_hop_without_routes_is_the_request_uri() -> None:
    assert next_hop_uri(request()) == parse_uri("sip:bob@biloxi.example")
