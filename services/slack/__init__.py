"""The Slack Intelligence service: a tenant's Slack workspace through its OAuthConnection
(channels, history, posting, users, search) and the Events API webhook that streams new
messages to the tenant's ``slack-messages`` topic. See docs/services/slack.md."""
