"""The in-memory change feed holds a bounded number of feeds and events: the least
recently used feed nobody follows is evicted, and a cursor into an evicted feed asks for a
resync instead of skipping changes."""

import asyncio
import uuid

from vektor.core.events import MAX_FEEDS, RESYNC, MemoryEventBus


async def test_feeds_of_many_users_stay_within_the_bound():
    bus = MemoryEventBus()
    users = [uuid.uuid4() for _ in range(MAX_FEEDS + 500)]
    first_cursor = ""
    for user in users:
        bus.publish_now(user, "profile.updated", user)
        if user == users[0]:
            first_cursor = await bus.current(user)
    feeds, events = bus.held()
    assert feeds <= MAX_FEEDS
    assert events <= MAX_FEEDS
    # The first user's feed was evicted: its cursor asks for a resync, even once the user
    # has new changes (no sequence number of the old feed is reused).
    bus.publish_now(users[0], "preferences.updated")
    assert await bus.since(users[0], first_cursor) == ([], True)
    # A recent user's cursor still resumes.
    last = users[-1]
    cursor = await bus.current(last)
    bus.publish_now(last, "device.removed", "dev-1")
    found, resync = await bus.since(last, cursor)
    assert not resync
    assert [(e.type, e.id) for e in found] == [("device.removed", "dev-1")]


async def test_events_in_all_stay_within_the_bound():
    bus = MemoryEventBus(max_feeds=100, max_events=50)
    users = [uuid.uuid4() for _ in range(10)]
    cursors = []
    for user in users:
        cursors.append(await bus.current(user))
        for _ in range(20):
            bus.publish_now(user, "conversation.updated")
    feeds, events = bus.held()
    assert events <= 50
    assert feeds <= 3
    newest, _ = await bus.since(users[-1], cursors[-1])
    assert len(newest) == 20


async def test_a_followed_feed_is_kept_and_its_follower_sees_new_changes():
    bus = MemoryEventBus(max_feeds=5)
    followed = uuid.uuid4()
    start = await bus.current(followed)
    follower = bus.follow(followed, start, ping_s=0.05)
    assert await anext(follower) is None  # idle: a heartbeat, and now following
    for _ in range(20):
        bus.publish_now(uuid.uuid4(), "profile.updated")
    assert bus.held()[0] <= 5
    bus.publish_now(followed, "preferences.updated")
    async with asyncio.timeout(2):
        event = await anext(follower)
        while event is None:
            event = await anext(follower)
    assert event.type == "preferences.updated"
    found, resync = await bus.since(followed, start)
    assert not resync
    assert [e.type for e in found] == ["preferences.updated"]
    await follower.aclose()
    # Unfollowed, it goes like any other; following its old cursor starts with a resync.
    for _ in range(20):
        bus.publish_now(uuid.uuid4(), "profile.updated")
    marker = await anext(bus.follow(followed, event.cursor, ping_s=0.05))
    assert marker is not None
    assert marker.type == RESYNC


async def test_an_eviction_moves_the_followed_feeds_it_passes_to_the_newest_end():
    """Followed feeds left at the oldest end would be walked past by every later eviction
    (a cost per new user growing with the idle followed feeds)."""
    bus = MemoryEventBus(max_feeds=6)
    followed = [uuid.uuid4() for _ in range(3)]
    followers = []
    for user_id in followed:
        follower = bus.follow(user_id, None, ping_s=0.05)
        assert await anext(follower) is None  # following
        followers.append(follower)
    others = [uuid.uuid4() for _ in range(3)]
    for user_id in others:
        bus.publish_now(user_id, "profile.updated")
    newcomer = uuid.uuid4()
    bus.publish_now(newcomer, "profile.updated")  # one feed too many: the oldest unfollowed goes
    order = list(bus._feeds)
    assert others[0] not in order
    assert len(order) == 6
    assert order[-3:] == followed  # passed over, now at the newest end
    assert order[:3] == [*others[1:], newcomer]
    for follower in followers:
        await follower.aclose()


async def test_since_a_cursor_gives_the_later_changes_in_order():
    bus = MemoryEventBus()
    user, other = uuid.uuid4(), uuid.uuid4()
    cursors = []
    for kind in ("a", "b", "c", "d"):
        bus.publish_now(user, kind)
        bus.publish_now(other, "elsewhere")  # one sequence for all feeds: gaps in each
        cursors.append(await bus.current(user))
    found, resync = await bus.since(user, cursors[1])
    assert not resync
    assert [event.type for event in found] == ["c", "d"]
    assert await bus.since(user, cursors[-1]) == ([], False)
