"""The sandbox's people: who can sign in at the IdP, and the groups they belong to.

The IdP puts `groups` in id_tokens from here, and the Q Business stand-in seeds its PutGroup-managed groups
from the same data, so a fresh sandbox is consistent (as a company's IdP and a synced Q index would be).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class User:
    username: str
    email: str
    name: str
    groups: tuple[str, ...] = ()
    email_verified: bool = True


@dataclass
class Directory:
    users: dict[str, User] = field(default_factory=dict)

    def add(self, user: User) -> None:
        self.users[user.username] = user

    def by_username(self, username: str) -> User | None:
        return self.users.get(username)

    def groups(self) -> dict[str, list[str]]:
        """Group name -> member emails, as PutGroup would be fed them."""
        members: dict[str, list[str]] = {}
        for user in self.users.values():
            for group in user.groups:
                members.setdefault(group, []).append(user.email)
        return members


def sample_directory(extra_users: int = 0) -> Directory:
    """The four named sample people, plus `extra_users` numbered ones (user001, ...) for benchmarks."""
    directory = Directory()
    directory.add(User("alice", "alice@example.com", "Alice Anders", ("core-team", "engineering")))
    directory.add(User("bob", "bob@example.com", "Bob Brown", ("sales",)))
    directory.add(User("carol", "carol@example.com", "Carol Chen", ("hr",)))
    directory.add(User("dave", "dave@example.com", "Dave Dunn", ("engineering",)))
    for n in range(1, extra_users + 1):
        directory.add(User(f"user{n:03d}", f"user{n:03d}@example.com", f"User {n:03d}", ("engineering",)))
    return directory
