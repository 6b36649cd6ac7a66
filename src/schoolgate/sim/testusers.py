"""Fictional test users of the simulated ESIA (no real person's data anywhere)."""

from __future__ import annotations

from typing import Any

TEST_USERS: dict[str, dict[str, Any]] = {
    "1000001": {
        "role": "pupil",
        "title": "Ученик",
        "firstName": "Тест",
        "lastName": "Ученикова",
        "middleName": "Симуляторовна",
        "birthDate": "12.03.2012",
        "gender": "F",
    },
    "1000002": {
        "role": "parent",
        "title": "Родитель",
        "firstName": "Тест",
        "lastName": "Родителев",
        "middleName": "Симуляторович",
        "birthDate": "01.02.1985",
        "gender": "M",
        "children": ["1000001"],
    },
    "1000003": {
        "role": "teacher",
        "title": "Учитель",
        "firstName": "Тест",
        "lastName": "Учителева",
        "middleName": "Симуляторовна",
        "birthDate": "05.06.1979",
        "gender": "F",
    },
}


def subject_for(oid: str) -> str:
    user = TEST_USERS[oid]
    return (
        f"/C=RU/O=schoolgate simulator test users/CN={user['lastName']} {user['firstName']} ({user['role']})"
    )


def person(oid: str) -> dict[str, Any]:
    user = TEST_USERS[oid]
    return {
        "oid": int(oid),
        "firstName": user["firstName"],
        "lastName": user["lastName"],
        "middleName": user["middleName"],
        "birthDate": user["birthDate"],
        "gender": user["gender"],
        "trusted": True,
        "status": "REGISTERED",
        "verifying": False,
        "roles": [user["role"]],
    }
