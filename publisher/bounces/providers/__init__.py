"""The providers' webhooks, one module each: verify a request as the provider documents it,
then read it into `MailEvent`s. `base` holds what they share; `PROVIDERS` names them."""

from .aliyun import Aliyun
from .base import Door, HookRequest, Malformed, Refused, ReplayGuard, Unavailable, Verified
from .mailgun import Mailgun
from .postmark import Postmark
from .resend import Resend
from .sendgrid import Sendgrid
from .ses import Ses

PROVIDERS = ("mailgun", "sendgrid", "postmark", "resend", "ses", "aliyun")

__all__ = [
    "PROVIDERS", "Aliyun", "Door", "HookRequest", "Mailgun", "Malformed", "Postmark", "Refused", "ReplayGuard",
    "Resend", "Sendgrid", "Ses", "Unavailable", "Verified",
]  # fmt: skip
