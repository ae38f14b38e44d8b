"""Character classes and regular expressions for SIP syntax (RFC 3261 section 25).

Every pattern here is derived from one rule of the RFC 3261 ABNF, quoted in the comment
beside it, with the reason for any deviation. RFC 5118 (IPv6 in SIP) and RFC 3966 (tel)
add a few rules. The other syntax modules (:mod:`switch.sip.uri`,
:mod:`switch.sip.headers`, :mod:`switch.sip.message`) import from here and never spell a
character set themselves.

Theory of operation: the grammar is not compiled into one big regular expression. Each
pattern matches one flat construct (a token, a port, a host) with character classes
whose alternatives never overlap (``%`` is outside every class it alternates with), so
there is only one way to match any input, matching is linear in its length, and no input
can trigger catastrophic backtracking. Structure (parameter lists, quoted
strings, comma lists) is walked by small hand-written loops in the modules above.
"""

from __future__ import annotations

import re
import string


def char_class(chars: str) -> str:
    """Render a set of literal characters as a regular-expression character class."""
    return "[" + "".join(re.escape(c) for c in sorted(set(chars))) + "]"


# --- RFC 3261 section 25.1: basic rules -------------------------------------------------

# Character sets are kept as plain strings of literal characters (usable both for
# membership tests when escaping and, through char_class, inside patterns).

#   alphanum  =  ALPHA / DIGIT
ALPHANUM = string.ascii_letters + string.digits

#   mark        =  "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
#   unreserved  =  alphanum / mark
UNRESERVED = ALPHANUM + "-_.!~*'()"

#   token       =  1*(alphanum / "-" / "." / "!" / "%" / "*"
#                  / "_" / "+" / "`" / "'" / "~" )
TOKEN_CHARS = ALPHANUM + "-.!%*_+`'~"
TOKEN_CLASS = char_class(TOKEN_CHARS)
TOKEN = re.compile(f"{TOKEN_CLASS}+")

#   WSP = SP / HTAB ;  LWS = [*WSP CRLF] 1*WSP ; SWS = [LWS]
# Folding (CRLF followed by WSP) is undone while the header section is split into lines
# (RFC 3261 section 7.3.1), so inside a header value LWS is only ever SP / HTAB.
WSP = " \t"

#   word        =  1*(alphanum / "-" / "." / "!" / "%" / "*" /
#                  "_" / "+" / "`" / "'" / "~" /
#                  "(" / ")" / "<" / ">" /
#                  ":" / "\" / DQUOTE /
#                  "/" / "[" / "]" / "?" /
#                  "{" / "}" )
WORD_CHARS = TOKEN_CHARS + '()<>:\\"/[]?{}'

#   callid   =  word [ "@" word ]
CALL_ID = re.compile(f"{char_class(WORD_CHARS)}+(?:@{char_class(WORD_CHARS)}+)?")

#   escaped     =  "%" HEXDIG HEXDIG
# (spelled "%[0-9A-Fa-f]{2}" inside the URI component patterns below)

# --- RFC 3261 section 25.1: SIP-URI ------------------------------------------------------

#   user             =  1*( unreserved / escaped / user-unreserved )
#   user-unreserved  =  "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER_SAFE = UNRESERVED + "&=+$,;?/"
USER = re.compile(f"(?:{char_class(USER_SAFE)}|%[0-9A-Fa-f]{{2}})+")

#   password         =  *( unreserved / escaped /
#                       "&" / "=" / "+" / "$" / "," )
PASSWORD_SAFE = UNRESERVED + "&=+$,"
PASSWORD = re.compile(f"(?:{char_class(PASSWORD_SAFE)}|%[0-9A-Fa-f]{{2}})*")

#   hostname         =  *( domainlabel "." ) toplabel [ "." ]
#   domainlabel      =  alphanum / alphanum *( alphanum / "-" ) alphanum
#   toplabel         =  ALPHA / ALPHA *( alphanum / "-" ) alphanum
# Matched here as one flat character class; the label rules are then checked label by
# label in Python (uri.check_hostname), which keeps the match linear.
HOSTNAME_CHARS = re.compile(r"[A-Za-z0-9.\-]+")
#   (one label of the above, used after splitting on ".")
DOMAINLABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?")

#   IPv4address    =  1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
# Deviation: each octet is also range-checked (<= 255) in Python.
IPV4ADDRESS = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")

#   IPv6reference  =  "[" IPv6address "]"
#   IPv6address    =  hexpart [ ":" IPv4address ]
#   hexpart        =  hexseq / hexseq "::" [ hexseq ] / "::" [ hexseq ]
# Matched as a flat character class, then validated by the ipaddress module. RFC 5118
# section 4.10: the RFC 3261 hexpart rule wrongly admits "2001:db8:::192.0.2.1" (three
# colons); we tolerate that one form and read it as "::".
IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")

#   port           =  1*DIGIT
# Deviation: at most 5 digits and <= 65535 (checked in Python); larger is no port.
PORT = re.compile(r"[0-9]{1,5}")

#   uri-parameter     =  transport-param / user-param / method-param
#                        / ttl-param / maddr-param / lr-param / other-param
#   other-param       =  pname [ "=" pvalue ]
#   pname             =  1*paramchar
#   pvalue            =  1*paramchar
#   paramchar         =  param-unreserved / unreserved / escaped
#   param-unreserved  =  "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAM_SAFE = UNRESERVED + "[]/:&+$"
PARAMCHARS = re.compile(f"(?:{char_class(PARAM_SAFE)}|%[0-9A-Fa-f]{{2}})+")

#   headers         =  "?" header *( "&" header )
#   header          =  hname "=" hvalue
#   hname           =  1*( hnv-unreserved / unreserved / escaped )
#   hvalue          =  *( hnv-unreserved / unreserved / escaped )
#   hnv-unreserved  =  "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNV_SAFE = UNRESERVED + "[]/?:+$"
HNAME = re.compile(f"(?:{char_class(HNV_SAFE)}|%[0-9A-Fa-f]{{2}})+")
HVALUE = re.compile(f"(?:{char_class(HNV_SAFE)}|%[0-9A-Fa-f]{{2}})*")

#   absoluteURI    =  scheme ":" ( hier-part / opaque-part )
#   scheme         =  ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
#   uric           =  reserved / unreserved / escaped
#   reserved       =  ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","
# Deviation: hier-part / opaque-part are not taken apart (we never route on these
# schemes); the rest must be 1*uric, plus "[" "]" for RFC 3986 IPv6 literals and "%"
# without checking that two hex digits follow.
ABSOLUTE_REST = re.compile(r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,%\[\]]+")

# --- RFC 3966 section 3: tel URI ----------------------------------------------------------

#   telephone-subscriber = global-number / local-number
#   phonedigit-hex       = HEXDIG / "*" / "#" / [ visual-separator ]
#   visual-separator     = "-" / "." / "(" / ")"
# Deviation: the number is one flat class (global "+" prefix, digits, hex digits, "*",
# "#", separators); its structure is not checked further.
TEL_NUMBER = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")

# --- RFC 3261 section 25.1: messages ------------------------------------------------------

#   SIP-Version    =  "SIP" "/" 1*DIGIT "." 1*DIGIT
# ("SIP" is case-insensitive in ABNF; RFC 3261 section 7.1 says senders use upper case.)
# Deviation: at most 3 digits each side, so no version string is unbounded.
SIP_VERSION = re.compile(r"[Ss][Ii][Pp]/[0-9]{1,3}\.[0-9]{1,3}")

#   Status-Code     =  3DIGIT   (extension-code = 3DIGIT)
# Deviation: the first digit is a class 1-6 (RFC 3261 section 7.2); others are refused.
STATUS_CODE = re.compile(r"[1-6][0-9][0-9]")

#   Reason-Phrase   =  *(reserved / unreserved / escaped
#                      / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
# Deviation: any character but CR, LF and other ASCII controls (HTAB allowed).
REASON_PHRASE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")

#   header-name       =  token
HEADER_NAME = TOKEN

#   CSeq  =  "CSeq" HCOLON 1*DIGIT LWS Method
# (The 32-bit bound of section 8.1.1.5 is checked in Python, on the digit count first.)
CSEQ = re.compile(f"([0-9]+)[ \\t]+({TOKEN_CLASS}+)")

#   Max-Forwards  =  "Max-Forwards" HCOLON 1*DIGIT
#   Content-Length  =  ( "Content-Length" / "l" ) HCOLON 1*DIGIT
# Deviation: bounded to 10 digits so no value can ever be a huge integer.
DIGITS = re.compile(r"[0-9]{1,10}")

#   quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
#   qdtext         =  LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
#   quoted-pair    =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
# Deviation: a quoted-pair may escape a non-ASCII character too (read leniently).
QUOTED_STRING = re.compile(r'"((?:[^"\\\r\n]|\\[^\r\n])*)"')

#   gen-value      =  token / host / quoted-string
# Unquoted: token characters plus ":" "[" "]" for hosts, IPv6 references and the bare
# IPv6 addresses that via-received allows (RFC 5118 section 4.5).
GEN_VALUE = re.compile(f"{char_class(TOKEN_CHARS + ':[]')}+")

#   sent-protocol     =  protocol-name SLASH protocol-version SLASH transport
#   protocol-name     =  "SIP" / token ;  protocol-version  =  token
#   transport         =  "UDP" / "TCP" / "TLS" / "SCTP" / other-transport
#   SLASH  =  SWS "/" SWS
SENT_PROTOCOL = re.compile(
    f"({TOKEN_CLASS}+)[ \\t]*/[ \\t]*({TOKEN_CLASS}+)[ \\t]*/[ \\t]*({TOKEN_CLASS}+)"
)

#   sent-by           =  host [ COLON port ] ;  COLON  =  SWS ":" SWS
# The host part is cut off by hand (IPv6 references contain ":"), see headers.parse_via.
