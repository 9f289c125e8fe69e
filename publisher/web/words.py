"""The words of the reader's web pages, in each language the site can have. Keyed by page part.

The pages' templates read them as `t`; `words_for` picks the table from `[site] language`.
"""

from __future__ import annotations

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "subscribe": "订阅{list_name}",
        "lead": "每周一封邮件，汇总您所选栏目的新文章。",
        "email": "邮箱地址",
        "name": "称呼（可不填）",
        "categories": "栏目（不选即为全部）",
        "none_is_all": "一个都不选，就是订阅全部栏目。",
        "submit": "订阅",
        "sent": "请查收邮件",
        "sent_body": "如果地址无误，我们刚给 {email} 发了一封邮件，请按邮件中的链接完成操作。"
        "没收到的话，请看看垃圾邮件文件夹。",
        "bad_email": "这个邮箱地址无效：{reason}",
        "too_many": "请求太多了，请稍后再试。",
        "expired": "链接无效或已过期",
        "expired_body": "这个链接已失效。请重新订阅，或使用最近一封邮件中的链接。",
        "confirm": "确认订阅",
        "confirm_body": "点击下面的按钮，确认用 {email} 订阅{list_name}。",
        "confirmed": "订阅成功",
        "confirmed_body": "{email} 已订阅{list_name}。每周的新文章会发到这个地址。",
        "preferences": "管理订阅",
        "preferences_body": "{email} 订阅的栏目：",
        "save": "保存",
        "saved": "已保存",
        "unsubscribe": "退订",
        "unsubscribe_body": "点击下面的按钮，{email} 将不再收到{list_name}。",
        "unsubscribed": "已退订",
        "unsubscribed_body": "{email} 已退订{list_name}，不会再收到周报。如是误操作，可以重新订阅。",
        "resubscribe": "重新订阅",
        "all": "全部栏目",
        "feeds": "RSS 订阅源",
        "csrf": "表单已过期，请刷新页面后重试。",
    },
    "en": {
        "subscribe": "Subscribe to {list_name}",
        "lead": "One e-mail a week with the new articles of the sections you choose.",
        "email": "E-mail address",
        "name": "Name (optional)",
        "categories": "Sections (none: all of them)",
        "none_is_all": "Tick none to get every section.",
        "submit": "Subscribe",
        "sent": "Check your inbox",
        "sent_body": "If the address is right, we just sent an e-mail to {email}: follow its link to "
        "finish. Nothing there? Look in the spam folder.",
        "bad_email": "This e-mail address is not valid: {reason}",
        "too_many": "Too many requests; please try again later.",
        "expired": "This link is not valid",
        "expired_body": "The link is broken or has expired. Subscribe again, or use the link in a recent e-mail.",
        "confirm": "Confirm your subscription",
        "confirm_body": "Press the button to subscribe {email} to {list_name}.",
        "confirmed": "You are subscribed",
        "confirmed_body": "{email} now gets {list_name}: the week's new articles, once a week.",
        "preferences": "Your subscription",
        "preferences_body": "Sections {email} gets:",
        "save": "Save",
        "saved": "Saved",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_body": "Press the button and {email} will get no more of {list_name}.",
        "unsubscribed": "Unsubscribed",
        "unsubscribed_body": "{email} will get no more of {list_name}. A mistake? Subscribe again.",
        "resubscribe": "Subscribe again",
        "all": "All sections",
        "feeds": "Feeds",
        "csrf": "The form has expired; reload the page and try again.",
    },
}


def words_for(language: str) -> dict[str, str]:
    """English for an `en*` site, Chinese for every other (the default site is zh-CN)."""
    return WORDS["en" if language.lower().startswith("en") else "zh"]
