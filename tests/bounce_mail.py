"""Bounces and complaints as mail systems write them, wrapped around a message we really sent.

The shapes follow what the software writes: Postfix's DSN (RFC 3464, the whole original or only
its headers, as RET=HDRS asks), an ARF feedback report (RFC 5965) as Yahoo's and Microsoft's
feedback loops send it, qmail's "failure notice" and Exim's "Mail delivery failed". Line ends are
CRLF, as IMAP APPEND wants them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

WHEN = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _headers_of(original: bytes) -> bytes:
    return original.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def dsn(
    original: bytes,
    recipient: str,
    *,
    to: str = "bounces@example.org",
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
    headers_only: bool = False,
) -> bytes:
    """Postfix's bounce: a notice, the delivery-status part, the original (or its headers)."""
    returned_type = "text/rfc822-headers" if headers_only else "message/rfc822"
    returned = _headers_of(original) if headers_only else original
    head = f"""\
Return-Path: <>
Delivered-To: {to}
Received: by mx.example.com (Postfix) id 4Zq1; {format_datetime(WHEN)}
Date: {format_datetime(WHEN)}
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
 boundary="4Zq1.1764741600/mx.example.com"
Message-Id: {make_msgid(domain="mx.example.com")}

This is a MIME-encapsulated message.

--4Zq1.1764741600/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.com said: {diagnostic.format(rcpt=recipient).partition("; ")[2]}

--4Zq1.1764741600/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 4Zq1
X-Postfix-Sender: rfc822; {to}
Arrival-Date: {format_datetime(WHEN)}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.com
Diagnostic-Code: {diagnostic.format(rcpt=recipient)}

--4Zq1.1764741600/mx.example.com
Content-Description: Undelivered Message
Content-Type: {returned_type}

"""
    return _crlf(head) + returned + b"\r\n--4Zq1.1764741600/mx.example.com--\r\n"


def arf(original: bytes, recipient: str, *, to: str = "fbl@example.org", feedback_type: str = "abuse") -> bytes:
    """A feedback-loop complaint: the human part, the report, the whole original."""
    head = f"""\
Return-Path: <staff@fbl.mail.example.net>
Delivered-To: {to}
Date: {format_datetime(WHEN)}
From: <staff@fbl.mail.example.net>
To: {to}
Subject: FW: =?utf-8?b?5pys5ZGo5pGY6KaB?=
Message-ID: {make_msgid(domain="fbl.mail.example.net")}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
 boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on {format_datetime(WHEN)}.
For more information about this format please see
http://tools.ietf.org/html/rfc5965

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounces@example.org>
Original-Rcpt-To: <{recipient}>
Arrival-Date: {format_datetime(WHEN)}
Reported-Domain: example.org
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

"""
    return _crlf(head) + original + b"\r\n--part1_13d.2e68ed54_boundary--\r\n"


def qmail(original: bytes, recipient: str, *, to: str = "bounces@example.org") -> bytes:
    head = f"""\
Return-Path: <>
Delivered-To: {to}
Date: {format_datetime(WHEN)}
From: MAILER-DAEMON@mail.example.net
To: {to}
Subject: failure notice
Message-ID: {make_msgid(domain="mail.example.net")}

Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.1.1 <{recipient}>... User unknown
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.

"""
    return _crlf(head) + original


def exim(original: bytes, recipient: str, *, to: str = "bounces@example.org") -> bytes:
    head = f"""\
Return-path: <>
Envelope-to: {to}
Date: {format_datetime(WHEN)}
From: Mail Delivery System <Mailer-Daemon@mail.example.net>
To: {to}
Subject: Mail delivery failed: returning message to sender
Message-Id: {make_msgid(domain="mail.example.net")}
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    host mx.example.com [192.0.2.9]
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

"""
    return _crlf(head) + original


def ordinary(to: str = "bounces@example.org") -> bytes:
    """What also lands in a bounce mailbox and is no bounce: an out-of-office reply."""
    return _crlf(f"""\
Date: {format_datetime(WHEN)}
From: Reader <reader@example.com>
To: {to}
Subject: Automatic reply: out of the office
Message-ID: {make_msgid(domain="example.com")}
Auto-Submitted: auto-replied

I am out of the office until Monday.
""")
