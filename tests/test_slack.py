"""SocialSlack against a local webhook server on 127.0.0.1."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from panoptes_cli.logging import logger
from panoptes_cli.social.slack import SocialSlack


class Webhook(ThreadingHTTPServer):
    """Records every POST; answers with ``status`` (Slack says ``ok``)."""

    daemon_threads = True

    def __init__(self):
        self.posts = []
        self.status = 200
        super().__init__(('127.0.0.1', 0), WebhookHandler)

    @property
    def url(self):
        return f'http://127.0.0.1:{self.server_port}/services/T000/B000/SECRETTOKEN'


class WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        self.server.posts.append({'path': self.path, 'type': self.headers['Content-Type'],
                                  'body': json.loads(body)})
        reply = b'ok' if self.server.status == 200 else b'invalid_token'
        self.send_response(self.server.status)
        self.send_header('Content-Length', str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = Webhook()
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def warnings():
    messages = []
    logger.enable('panoptes_cli')
    sink = logger.add(lambda message: messages.append(str(message)), level='WARNING')
    yield messages
    logger.remove(sink)
    logger.disable('panoptes_cli')


def test_posts_the_message(webhook):
    slack = SocialSlack(webhook_url=webhook.url)
    assert slack.send_message('Observing M42', '2024-01-01T00:00:00') is True
    assert webhook.posts == [{'path': '/services/T000/B000/SECRETTOKEN',
                              'type': 'application/json', 'body': {'text': 'Observing M42'}}]


def test_posts_the_timestamp_when_asked(webhook):
    slack = SocialSlack(webhook_url=webhook.url, output_timestamp=True)
    slack.send_message('Dome closed', '2024-01-01T06:00:00')
    assert webhook.posts[0]['body'] == {'text': 'Dome closed - 2024-01-01T06:00:00'}


def test_needs_a_webhook():
    with pytest.raises(ValueError, match='webhook_url'):
        SocialSlack(webhook_url='')
    with pytest.raises(ValueError, match='webhook_url'):
        SocialSlack(output_timestamp=True)


def test_http_error_is_logged_not_raised(webhook, warnings):
    webhook.status = 403
    slack = SocialSlack(webhook_url=webhook.url)
    assert slack.send_message('hello', None) is False
    assert len(webhook.posts) == 1
    assert any('HTTP 403' in message and 'invalid_token' in message for message in warnings)
    assert not any('SECRETTOKEN' in message for message in warnings)


def test_unreachable_slack_is_logged_not_raised(warnings):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    slack = SocialSlack(webhook_url=f'http://127.0.0.1:{port}/services/SECRETTOKEN')
    assert slack.send_message('hello', None) is False
    assert any('Error posting to Slack (127.0.0.1:' in message for message in warnings)
    assert not any('SECRETTOKEN' in message for message in warnings)


def test_a_stalled_slack_cannot_block_the_caller(warnings):
    # Accepts connections (the kernel's backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen(5)
        slack = SocialSlack(webhook_url=f'http://127.0.0.1:{silent.getsockname()[1]}/x',
                            timeout=0.3)
        started = time.monotonic()
        assert slack.send_message('hello', None) is False
        assert time.monotonic() - started < 5
    assert warnings


def test_a_loop_keeps_going_through_failures(webhook):
    slack = SocialSlack(webhook_url=webhook.url)
    results = []
    for number, status in enumerate([200, 500, 200]):
        webhook.status = status
        results.append(slack.send_message(f'message {number}', None))
    assert results == [True, False, True]
    assert [post['body']['text'] for post in webhook.posts] == ['message 0', 'message 1',
                                                               'message 2']
