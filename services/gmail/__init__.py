"""The Gmail Intelligence service: a tenant's mailbox through its OAuthConnection (list and
search, messages with decoded bodies, threads, send with attachments, labels and modify) and
``email-updates`` events from history polling. Served at ``/api/v2/gmail`` (the gateway also
routes ``/api/v2/email`` here). See docs/services/gmail.md."""
