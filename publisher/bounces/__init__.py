"""The deliverability loop: what mail providers and bounce mailboxes say about mail we sent
(bounces, complaints, unsubscribes), turned into `MailEvent`s, linked to the delivery they
refer to, and acted on by the rules (the suppression list)."""
