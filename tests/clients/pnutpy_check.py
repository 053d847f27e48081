#!/usr/bin/env python3
"""Runs the real PyPI client pnutpy (0.5.4) against spout.

Starts spout ($SPOUT_BIN, default target/debug/spout) on a fresh temporary
database with ports picked by the OS on 127.0.0.1, creates users and an app
with the admin commands, builds fixtures over plain HTTP (posts, a reply, a
repost, bookmarks, follows, mutes, blocks, presence, a chat channel with
messages and a sticky one, a PM, files, polls, markers, an avatar), then
calls every method pnutpy's API class binds, each on its own, and records:
ok, the exception, or an empty answer where data was expected.

Prints a table and "N of M methods work"; exits 1 if a method fails that is
not in CANNOT_WORK (or one in it works), 2 if the setup itself fails.
Every wait has a timeout; the server is stopped at the end.
Run with tests/clients/run.sh (makes a venv with pnutpy 0.5.4).
"""

import json
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import requests
from pnutpy.api import API

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPOUT = os.environ.get("SPOUT_BIN", os.path.join(ROOT, "target", "debug", "spout"))
TIMEOUT = 10  # seconds, for every HTTP request and every wait
SCOPES = "basic,stream,write_post,follow,update_profile,presence,messages,public_messages,files,polls"

# Methods that cannot work against any server because of pnutpy itself
# (each claim checked against pnutpy 0.5.4's api.py and models.py).
# A path that pnut.io itself does not serve is NOT listed here: a server can
# answer it (spout serves pnutpy's /posts/tag/{tag} beside pnut's /tags/),
# so such a method counts as a failure of the server.
CANNOT_WORK = {}


class Setup(Exception):
    pass


# ---------------------------------------------------------------- server


class Spout:
    def __init__(self, workdir):
        self.db = os.path.join(workdir, "spout.db")
        self.errlog = open(os.path.join(workdir, "stderr.log"), "w+")
        self.proc = subprocess.Popen(
            [SPOUT, "serve", "--db", self.db, "--api-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.errlog, text=True,
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.api = None
        deadline = time.monotonic() + TIMEOUT
        while self.api is None:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise Setup("spout did not print its API address within %ss:\n%s" % (TIMEOUT, self.stderr()))
            if line.startswith("api listening on "):
                self.api = line.split()[-1].strip()

    def stderr(self):
        self.errlog.seek(0)
        return self.errlog.read()[-3000:]

    def admin(self, *args, stdin=""):
        r = subprocess.run([SPOUT, "admin", *args, "--db", self.db], input=stdin,
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Setup("spout admin %s failed: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout.strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT)
        self.errlog.close()


# ---------------------------------------------------------------- clients


class Client(API):
    """pnutpy's API with a timeout on every request and a log of the HTTP calls."""

    calls = []  # shared: (method, path, status, body) of every request since the last reset

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("hooks", {"response": self._log})
        return super().request(method, url, *args, **kwargs)

    @staticmethod
    def _log(r, *args, **kwargs):
        Client.calls.append((r.request.method, r.request.path_url, r.status_code, r.text[:300]))


def pnut(base, token):
    return Client.build_api(api_root=base + "/v1", access_token=token)


def http(base, token, method, path, **kwargs):
    """A fixture request with plain requests; returns `data` or raises Setup."""
    r = requests.request(method, base + "/v1" + path, headers={"Authorization": "Bearer " + token},
                         timeout=TIMEOUT, **kwargs)
    if r.status_code >= 300:
        raise Setup("fixture %s %s: %s %s" % (method, path, r.status_code, r.text[:300]))
    return r.json().get("data") if r.content else None


def tiny_png(rgb=(200, 60, 30)):
    """A valid 1x1 RGB PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    raw = b"\x00" + bytes(rgb)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- fixtures


def build_world(s):
    w = {}
    for name in ["alice", "bob", "carol", "dave", "erin"]:
        w[name + "_id"] = json.loads(s.admin("user", "add", name, stdin="password-of-" + name + "\n"))["id"]
    app = json.loads(s.admin("app", "add", "--password-grant", "pnutpy check"))
    for name in ["alice", "bob"]:
        w[name] = s.admin("token", "add", "--app", app["client_id"], "--user", name, "--scopes", SCOPES)
    w["app"] = s.admin("token", "add", "--app", app["client_id"])

    def A(method, path, **kw):
        return http(s.api, w["alice"], method, path, **kw)

    def B(method, path, **kw):
        return http(s.api, w["bob"], method, path, **kw)

    bob, carol, dave, erin = w["bob_id"], w["carol_id"], w["dave_id"], w["erin_id"]
    # posts: alice's, bob's mentioning her, a reply (thread), a repost, bookmarks
    w["post_a"] = A("POST", "/posts", json={"text": "hello world #spout from alice"})["id"]
    w["post_b"] = B("POST", "/posts", json={"text": "@alice hello from bob #spout"})["id"]
    w["reply"] = B("POST", "/posts", json={"text": "@alice a reply", "reply_to": w["post_a"]})["id"]
    w["post_b2"] = B("POST", "/posts", json={"text": "bob's second post"})["id"]
    w["post_doomed"] = A("POST", "/posts", json={"text": "to be deleted by pnutpy"})["id"]
    B("PUT", "/posts/%s/repost" % w["post_a"])
    A("PUT", "/posts/%s/bookmark" % w["post_b"])
    A("PUT", "/posts/%s/repost" % w["post_b2"])      # for unrepost_post
    A("PUT", "/posts/%s/bookmark" % w["post_b2"])    # for unbookmark_post
    # graph: alice <-> bob follow, alice mutes dave, blocks erin
    A("PUT", "/users/%s/follow" % bob)
    B("PUT", "/users/%s/follow" % w["alice_id"])
    A("PUT", "/users/%s/mute" % dave)
    A("PUT", "/users/%s/block" % erin)
    # presence and avatars
    A("PUT", "/users/me/presence", data={"presence": "around"})
    B("PUT", "/users/me/presence", data={"presence": "online"})
    B("POST", "/users/me/avatar", files={"avatar": ("b.png", tiny_png((0, 90, 200)), "image/png")})
    # a chat room with messages (one sticky), a muted room, a room for bob to (un)subscribe
    acl = {"read": {"any_user": True}, "write": {"any_user": True}}
    chat = {"type": "io.pnut.core.chat", "acl": acl, "raw": {"io.pnut.core.chat-settings": [{"name": "Lobby"}]}}
    w["chat"] = A("POST", "/channels", json=chat)["id"]
    w["msg1"] = A("POST", "/channels/%s/messages" % w["chat"], json={"text": "hello lobby @bob"})["id"]
    w["msg2"] = B("POST", "/channels/%s/messages" % w["chat"], json={"text": "hello alice"})["id"]
    w["msg_doomed"] = A("POST", "/channels/%s/messages" % w["chat"], json={"text": "to be deleted"})["id"]
    w["msg_stuck"] = A("POST", "/channels/%s/messages" % w["chat"], json={"text": "pinned"})["id"]
    A("PUT", "/channels/%s/messages/%s/sticky" % (w["chat"], w["msg_stuck"]))
    room = lambda name: dict(chat, raw={"io.pnut.core.chat-settings": [{"name": name}]})
    w["muted_room"] = A("POST", "/channels", json=room("Muted"))["id"]
    A("PUT", "/channels/%s/mute" % w["muted_room"])
    w["room2"] = A("POST", "/channels", json=room("Room 2"))["id"]
    B("PUT", "/channels/%s/subscribe" % w["room2"])  # bob is subscribed: unsubscribe_channel target
    w["room3"] = A("POST", "/channels", json=room("Room 3"))["id"]  # alice mutes it via pnutpy
    # a PM from bob to alice (unread for her)
    pm = B("POST", "/channels/pm/messages", json={"destinations": [w["alice_id"]], "text": "psst alice"})
    w["pm"] = pm["channel_id"]
    # markers
    A("POST", "/markers", json=[{"name": "channel:%s" % w["chat"], "id": w["msg2"]},
                                {"name": "global", "id": w["post_b"]}])
    # files: one with content, one placeholder, one to delete
    w["file"] = A("POST", "/files", data={"type": "com.example.note", "name": "note.txt", "kind": "other"},
                  files={"content": ("note.txt", b"remember the milk\n", "text/plain")})["id"]
    w["placeholder"] = A("POST", "/files", json={"type": "com.example.note", "name": "later.txt", "kind": "other"})["id"]
    w["file_doomed"] = A("POST", "/files", data={"type": "com.example.note", "name": "x.txt", "kind": "other"},
                         files={"content": ("x.txt", b"bye\n", "text/plain")})["id"]
    # polls: one to answer, one to delete
    # public: pnutpy cannot send a poll_token (not in POLL_PARAMS, and any other
    # keyword goes to requests, which refuses it), so it can answer only polls
    # it may see without one
    poll = {"type": "com.example.poll", "prompt": "Tea or coffee?", "duration": 60, "is_public": True,
            "options": [{"text": "tea"}, {"text": "coffee"}]}
    w["poll"] = A("POST", "/polls", json=poll)["id"]
    w["poll_doomed"] = A("POST", "/polls", json=poll)["id"]
    return w


# ---------------------------------------------------------------- checks


def real(d):
    """The fields of a pnutpy model, without its private _api."""
    return {k: v for k, v in d.items() if not str(k).startswith("_")} if isinstance(d, dict) else d


def is_list(pred=None, what="a matching item"):
    def check(result):
        data, _ = result
        if not isinstance(data, list):
            return "expected a list, got %r" % type(data).__name__
        if not data:
            return "empty list"
        if pred and not any(pred(x) for x in data):
            return "no %s in %d items" % (what, len(data))
    return check


def is_obj(pred=None, what="the expected object"):
    def check(result):
        if result is None:
            return "no answer (204)"
        data, _ = result
        if not real(data):
            return "empty object"
        if pred and not pred(data):
            return "not %s: %s" % (what, json.dumps(real(data), default=str)[:200])
    return check


def is_value(pred, what):
    def check(result):
        data, _ = result
        if not pred(data):
            return "expected %s, got %r" % (what, data)
    return check


def has_id(want):
    return lambda d: str(d.get("id")) == str(want)


def is_unread_pm(data):
    """pnutpy passes num_unread's data through untouched: a number or {type: number}."""
    return data == 1 or (isinstance(data, dict) and data.get("io.pnut.core.pm") == 1)


def content_set(api, file_id, want):
    """set_file_content: pnut answers 204 (pnutpy returns None) or the file; then the bytes must be there."""
    def check(result):
        if result is not None and not has_id(file_id)(result[0]):
            return "not the file: %s" % json.dumps(real(result[0]), default=str)[:200]
        return file_bytes(want)(api.get_file_content(file_id))
    return check


def file_bytes(want):
    def check(r):
        if r.status_code != 200:
            return "HTTP %s: %s" % (r.status_code, r.text[:200])
        if r.content != want:
            return "content %r != %r" % (r.content[:60], want)
    return check


def checks(w, a, b):
    """(method name, call, check of the answer) for every method pnutpy binds, in api.py's order."""
    me = w["alice_id"]
    png = tiny_png()
    poll_opts = lambda d: len(d.get("options", [])) == 2
    return [
        # posts
        ("create_post", lambda: a.create_post(data={"text": "made by pnutpy #pnutpy"}),
         is_obj(lambda d: d.content.text == "made by pnutpy #pnutpy", "the new post")),
        ("get_post", lambda: a.get_post(w["post_b"]), is_obj(has_id(w["post_b"]))),
        ("delete_post", lambda: a.delete_post(w["post_doomed"]),
         is_obj(lambda d: has_id(w["post_doomed"])(d) and d.get("is_deleted"), "the deleted post")),
        ("repost_post", lambda: a.repost_post(w["post_b"]), is_obj(has_id(w["post_b"]))),
        ("unrepost_post", lambda: a.unrepost_post(w["post_b2"]), is_obj(has_id(w["post_b2"]))),
        ("bookmark_post", lambda: a.bookmark_post(w["reply"]), is_obj(has_id(w["reply"]))),
        ("unbookmark_post", lambda: a.unbookmark_post(w["post_b2"]), is_obj(has_id(w["post_b2"]))),
        ("get_posts", lambda: a.get_posts(ids="%s,%s" % (w["post_a"], w["post_b"])),
         is_list(has_id(w["post_b"]), "post_b")),
        ("users_posts", lambda: a.users_posts(me), is_list(has_id(w["post_a"]), "post_a")),
        ("users_bookmarked_posts", lambda: a.users_bookmarked_posts("me"), is_list(has_id(w["post_b"]), "post_b")),
        ("users_mentioned_posts", lambda: a.users_mentioned_posts("me"), is_list(has_id(w["post_b"]), "post_b")),
        ("posts_with_hashtag", lambda: a.posts_with_hashtag("spout"), is_list(has_id(w["post_a"]), "post_a")),
        ("posts_thread", lambda: a.posts_thread(w["post_a"]), is_list(has_id(w["reply"]), "the reply")),
        ("users_post_streams_me", lambda: a.users_post_streams_me(), is_list(has_id(w["post_a"]), "post_a")),
        ("users_post_streams_unified", lambda: a.users_post_streams_unified(),
         is_list(has_id(w["post_b"]), "bob's post")),
        ("posts_streams_global", lambda: a.posts_streams_global(), is_list(has_id(w["post_b"]), "post_b")),
        ("post_search", lambda: a.post_search(q="hello"), is_list(has_id(w["post_b"]), "post_b")),
        # users
        ("get_user", lambda: a.get_user(w["bob_id"]), is_obj(lambda d: d.username == "bob", "bob")),
        ("get_users", lambda: a.get_users(ids="%s,%s" % (me, w["bob_id"])),
         is_list(lambda u: u.username == "bob", "bob")),
        ("update_user", lambda: a.update_user("me", data={
            "name": "Alice A.", "locale": "en_US", "timezone": "Europe/Berlin",
            "content": {"text": "I test clients"}}),
         is_obj(lambda d: d.get("name") == "Alice A.", "the renamed user")),
        ("patch_user", lambda: a.patch_user("me", data={"name": "Alice"}),
         is_obj(lambda d: d.get("name") == "Alice", "the renamed user")),
        ("update_avatar", lambda: a.update_avatar(files={"avatar": ("a.png", png, "image/png")}),
         is_obj(lambda d: d.content.avatar_image.is_default is False, "a user with a non-default avatar")),
        ("update_cover", lambda: a.update_cover(files={"cover": ("c.png", png, "image/png")}),
         is_obj(lambda d: d.content.cover_image.is_default is False, "a user with a non-default cover")),
        ("follow_user", lambda: a.follow_user(w["carol_id"]), is_obj(has_id(w["carol_id"]))),
        ("unfollow_user", lambda: a.unfollow_user(w["carol_id"]), is_obj(has_id(w["carol_id"]))),
        ("mute_user", lambda: a.mute_user(w["carol_id"]), is_obj(has_id(w["carol_id"]))),
        ("unmute_user", lambda: a.unmute_user(w["carol_id"]), is_obj(has_id(w["carol_id"]))),
        ("block_user", lambda: a.block_user(w["carol_id"]), is_obj(has_id(w["carol_id"]))),
        ("unblock_user", lambda: a.unblock_user(w["carol_id"]), is_obj(has_id(w["carol_id"]))),
        ("users_following", lambda: a.users_following("me"), is_list(has_id(w["bob_id"]), "bob")),
        ("users_followers", lambda: a.users_followers("me"), is_list(has_id(w["bob_id"]), "bob")),
        ("users_muted_users", lambda: a.users_muted_users("me"), is_list(has_id(w["dave_id"]), "dave")),
        ("users_muted_users_ids", lambda: a.users_muted_users_ids("me"), is_list(has_id(w["dave_id"]), "dave")),
        ("users_blocked_users", lambda: a.users_blocked_users("me"), is_list(has_id(w["erin_id"]), "erin")),
        ("user_search", lambda: a.user_search(q="bob"), is_list(lambda u: u.username == "bob", "bob")),
        ("user_presence", lambda: a.user_presence(), is_list(lambda p: str(p.get("id")) == str(w["bob_id"]), "bob")),
        ("get_users_presence", lambda: a.get_users_presence(w["bob_id"]),
         is_obj(lambda d: d.get("presence") == "online", "bob online")),
        ("update_users_presence", lambda: a.update_users_presence("me", presence="checking pnutpy"),
         is_obj(lambda d: d.get("presence") == "checking pnutpy", "the new presence")),
        # channels
        ("subscribed_channels", lambda: a.subscribed_channels(), is_list(has_id(w["chat"]), "the chat room")),
        ("existing_pm", lambda: a.existing_pm(ids=w["bob_id"]), is_obj(has_id(w["pm"]))),
        ("create_channel", lambda: a.create_channel(data={
            "type": "com.example.room", "acl": {"read": {"public": True}}}),
         is_obj(lambda d: d.type == "com.example.room", "the new channel")),
        ("get_channel", lambda: a.get_channel(w["chat"]), is_obj(has_id(w["chat"]))),
        ("get_channels", lambda: a.get_channels(ids="%s,%s" % (w["chat"], w["pm"])),
         is_list(has_id(w["pm"]), "the PM channel")),
        ("users_channels", lambda: a.users_channels(), is_list(has_id(w["chat"]), "the chat room")),
        ("num_unread_pm_channels", lambda: a.num_unread_pm_channels(),
         is_value(is_unread_pm, "1 unread PM channel")),
        ("update_channel", lambda: a.update_channel(w["chat"], data={
            "acl": {"read": {"any_user": True}, "write": {"any_user": True}},
            "raw": {"io.pnut.core.chat-settings": [{"name": "Lobby 2"}]}}),
         is_obj(has_id(w["chat"]))),
        ("subscribe_channel", lambda: b.subscribe_channel(w["chat"]),
         is_obj(lambda d: has_id(w["chat"])(d) and d.get("you_subscribed") is True, "subscribed")),
        ("unsubscribe_channel", lambda: b.unsubscribe_channel(w["room2"]),
         is_obj(lambda d: has_id(w["room2"])(d) and d.get("you_subscribed") is False, "unsubscribed")),
        ("subscribed_users", lambda: a.subscribed_users(w["chat"]), is_list(has_id(me), "alice")),
        ("mute_channel", lambda: a.mute_channel(w["room3"]),
         is_obj(lambda d: has_id(w["room3"])(d) and d.get("you_muted") is True, "muted")),
        ("unmute_channel", lambda: a.unmute_channel(w["room3"]),
         is_obj(lambda d: has_id(w["room3"])(d) and d.get("you_muted") is False, "unmuted")),
        ("muted_channels", lambda: a.muted_channels(), is_list(has_id(w["muted_room"]), "the muted room")),
        # channel_search cannot send `q` (not in CHANNEL_SEARCH_PARAMS: requests gets it as a keyword
        # and raises TypeError), so it searches by type
        ("channel_search", lambda: a.channel_search(channel_types="io.pnut.core.chat"),
         is_list(has_id(w["chat"]), "the chat room")),
        # messages
        ("get_channel_messages", lambda: a.get_channel_messages(w["chat"]), is_list(has_id(w["msg2"]), "msg2")),
        ("create_message", lambda: a.create_message(w["chat"], data={"text": "sent by pnutpy"}),
         is_obj(lambda d: d.content.text == "sent by pnutpy", "the new message")),
        ("get_message", lambda: a.get_message(w["chat"], w["msg1"]), is_obj(has_id(w["msg1"]))),
        ("get_messages", lambda: a.get_messages(ids="%s,%s" % (w["msg1"], w["msg2"])),
         is_list(has_id(w["msg2"]), "msg2")),
        ("users_messages", lambda: a.users_messages(), is_list(has_id(w["msg1"]), "msg1")),
        ("delete_message", lambda: a.delete_message(w["chat"], w["msg_doomed"]),
         is_obj(lambda d: has_id(w["msg_doomed"])(d) and d.get("is_deleted"), "the deleted message")),
        ("message_search", lambda: a.message_search(q="lobby"), is_list(has_id(w["msg1"]), "msg1")),
        ("sticky_messages", lambda: a.sticky_messages(w["chat"]), is_list(has_id(w["msg_stuck"]), "the sticky one")),
        ("stick_message", lambda: a.stick_message(w["chat"], w["msg1"]),
         is_obj(lambda d: has_id(w["msg1"])(d) and d.get("is_sticky") is True, "stuck")),
        ("unstick_message", lambda: a.unstick_message(w["chat"], w["msg1"]),
         is_obj(lambda d: has_id(w["msg1"])(d) and not d.get("is_sticky"), "unstuck")),
        # files
        ("create_file", lambda: a.create_file(
            data={"type": "com.example.note", "name": "pnutpy.txt", "kind": "other"},
            files={"content": ("pnutpy.txt", b"from pnutpy\n", "text/plain")}),
         is_obj(lambda d: d.get("name") == "pnutpy.txt", "the new file")),
        ("update_file", lambda: a.update_file(w["file"], data={"name": "renamed.txt"}),
         is_obj(lambda d: d.get("name") == "renamed.txt", "the renamed file")),
        ("set_file_content", lambda: a.set_file_content(
            w["placeholder"], files={"content": ("later.txt", b"now there\n", "text/plain")}),
         content_set(a, w["placeholder"], b"now there\n")),
        ("get_file_content", lambda: a.get_file_content(w["file"]), file_bytes(b"remember the milk\n")),
        ("get_file", lambda: a.get_file(w["file"]), is_obj(has_id(w["file"]))),
        ("get_files", lambda: a.get_files(ids="%s,%s" % (w["file"], w["placeholder"])),
         is_list(has_id(w["placeholder"]), "the placeholder")),
        ("delete_file", lambda: a.delete_file(w["file_doomed"]), is_obj(has_id(w["file_doomed"]))),
        ("get_my_files", lambda: a.get_my_files(), is_list(has_id(w["file"]), "the file")),
        # polls
        ("create_poll", lambda: a.create_poll(data={
            "type": "com.example.poll", "prompt": "Yes?", "duration": 60,
            "options": [{"text": "yes"}, {"text": "no"}]}), is_obj(poll_opts, "a poll with 2 options")),
        ("respond_to_poll", lambda: b.respond_to_poll(w["poll"], 1), is_obj(has_id(w["poll"]))),
        ("get_poll", lambda: a.get_poll(w["poll"]), is_obj(has_id(w["poll"]))),
        ("delete_poll", lambda: a.delete_poll(w["poll_doomed"]), is_obj(has_id(w["poll_doomed"]))),
        ("get_my_polls", lambda: a.get_my_polls(), is_list(has_id(w["poll"]), "the poll")),
        # interactions, text, token, config, stats, explore
        ("interactions_with_user", lambda: a.interactions_with_user(),
         is_list(lambda i: i.get("action") == "follow", "bob's follow")),
        ("text_process", lambda: a.text_process(data={"text": "hi @bob #tag https://example.com"}),
         is_obj(lambda d: len(d.entities.mentions) == 1 and len(d.entities.tags) == 1, "entities")),
        ("get_token", lambda: a.get_token(), is_obj(lambda d: d.user.username == "alice", "alice's token")),
        ("get_config", lambda: a.get_config(), is_obj()),
        ("get_stats", lambda: a.get_stats(), is_obj()),
        ("get_explore_streams", lambda: a.get_explore_streams(), is_list()),
        ("get_explore_stream", lambda: a.get_explore_stream("conversations"), is_list()),
    ]


def bound_methods():
    """Every method pnutpy's bind_api_method put on API."""
    return [n for n, f in vars(API).items() if callable(f) and getattr(f, "__name__", "") == "run"]


def describe(calls):
    if not calls:
        return "-"
    m, path, status, _ = calls[0]  # the call of the method under test
    return "%s %s -> %s" % (m, path.split("?")[0], status)


def run_checks(w, base):
    a, b = pnut(base, w["alice"]), pnut(base, w["bob"])
    table = checks(w, a, b)
    names = [n for n, _, _ in table]
    bound = bound_methods()
    extra = set(names) - set(bound)
    if extra or len(set(names)) != len(names):
        raise Setup("the check table names methods pnutpy does not bind, or twice: %s" % sorted(extra))
    results = {}
    for name, call, check in table:
        Client.calls.clear()
        try:
            problem = check(call())
            status = "ok" if problem is None else "EMPTY" if "empty" in problem or "no answer" in problem else "WRONG"
        except Exception as e:  # pnutpy raises its own exceptions, requests' and model errors
            status, problem = "FAIL", "%s: %s" % (type(e).__name__, e)
        results[name] = (status, describe(Client.calls), problem or "")
    for name in bound:
        if name not in results:
            results[name] = ("FAIL", "-", "no check written for this method")
    return bound, results


def report(bound, results):
    width = max(len(n) for n in bound)
    bad = []
    print("%-*s  %-6s  %-52s  %s" % (width, "method", "result", "HTTP call", "detail"))
    for name in bound:
        status, call, detail = results[name]
        if name in CANNOT_WORK:
            if status == "ok":
                bad.append(name)
                detail = "listed in CANNOT_WORK but works: remove it from the list"
            else:
                status, detail = "CANNOT", CANNOT_WORK[name]
        elif status != "ok":
            bad.append(name)
        print("%-*s  %-6s  %-52s  %s" % (width, name, status, call, detail[:160].replace("\n", " ")))
    works = sum(1 for n in bound if results[n][0] == "ok")
    print()
    print("%d of %d methods work" % (works, len(bound)))
    if CANNOT_WORK:
        print("cannot work against any server (pnutpy's own bugs): %s" % ", ".join(sorted(CANNOT_WORK)))
    if bad:
        print("failing: %s" % ", ".join(bad))
    return 1 if bad else 0


def main():
    if not os.access(SPOUT, os.X_OK):
        print("no spout binary at %s (set SPOUT_BIN)" % SPOUT, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="spout-pnutpy-") as tmp:
        server = None
        try:
            server = Spout(tmp)
            world = build_world(server)
            bound, results = run_checks(world, server.api)
            return report(bound, results)
        except (Setup, subprocess.TimeoutExpired, requests.RequestException) as e:
            print("setup failed: %s" % e, file=sys.stderr)
            if server:
                print("spout's stderr:\n%s" % server.stderr(), file=sys.stderr)
            return 2
        finally:
            if server:
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
