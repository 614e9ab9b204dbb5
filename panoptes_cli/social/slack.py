"""Post messages to a Slack channel through an incoming-webhook URL."""

from urllib.parse import urlsplit

import requests

from panoptes_cli.logging import logger


class SocialSlack:
    """Post messages to a Slack channel through an incoming webhook.

    Messages are posted as ``{"text": ...}`` to the webhook URL. A failure
    (Slack down, network gone, a revoked webhook) is logged as a warning and
    :meth:`send_message` returns False: it never raises into the caller's loop,
    and a request never takes longer than ``timeout`` seconds (0.2.29 had no
    timeout, so a stalled connection blocked the caller for ever).

    >>> SocialSlack()
    Traceback (most recent call last):
      ...
    ValueError: webhook_url parameter is not defined.

    Keyword Args:
        webhook_url (str): The Slack incoming-webhook URL (required).
        output_timestamp (bool): Append `` - <timestamp>`` to messages (default False).
        timeout (float): Seconds to wait for Slack (default 10).
    """

    def __init__(self, **kwargs):
        self.web_hook = kwargs.get('webhook_url') or ''
        if not self.web_hook:
            raise ValueError('webhook_url parameter is not defined.')
        self.output_timestamp = bool(kwargs.get('output_timestamp', False))
        self.timeout = float(kwargs.get('timeout', 10.0))
        # The webhook URL is a secret: logs name only its host.
        parts = urlsplit(self.web_hook)
        self._where = parts.netloc or 'the webhook'
        self._secret = parts.path + (f'?{parts.query}' if parts.query else '')

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, '/<webhook path>') if len(self._secret) > 1 else text

    def send_message(self, msg: str, timestamp=None) -> bool:
        """Post ``msg`` (with `` - timestamp`` when ``output_timestamp``); return True on success."""
        text = f'{msg} - {timestamp}' if self.output_timestamp else f'{msg}'
        try:
            response = requests.post(self.web_hook, json={'text': text}, timeout=self.timeout)
        except requests.RequestException as err:
            logger.warning('Error posting to Slack ({}): {}', self._where, self._redact(str(err)))
            return False
        if not response.ok:
            logger.warning('Error posting to Slack ({}): HTTP {} {}', self._where,
                           response.status_code, response.text[:200])
            return False
        return True
