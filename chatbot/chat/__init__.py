"""The chat itself: conversations, branches, replies, settings, attachments, sharing, accounts, limits, live
markdown, titles and reasoning. Plain arguments in, plain values out: nothing here imports Flask."""
