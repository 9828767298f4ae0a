"""Notice delivery: content, templates, X-ARF, channels (SMTP, HTTP API), the outbox sender."""
