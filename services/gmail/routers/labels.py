"""Labels: list and create (modify a message's labels: messages router)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.gmail.deps import Editor, Gmail
from services.gmail.routers import PREFIX

__all__ = ["router"]

router = APIRouter(prefix=f"{PREFIX}/labels", tags=["labels"])


class NewLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=225, pattern=r"^[^\x00-\x1f]+$")


@router.get("", summary="List labels")
async def list_labels(gmail: Gmail) -> dict[str, Any]:
    found = await gmail.run(lambda u: u.labels().list(userId="me"))
    return {"labels": found.get("labels", [])}


@router.post("", status_code=201, summary="Create a label")
async def create_label(_: Editor, gmail: Gmail, body: NewLabel) -> dict[str, Any]:
    return await gmail.run(
        lambda u: u.labels().create(
            userId="me",
            body={
                "name": body.name,
                "labelListVisibility": "labelShow",
                "messageListVisibility": "show",
            },
        ),
        fields={"name": "name"},
    )
