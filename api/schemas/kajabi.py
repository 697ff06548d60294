"""The two documented Kajabi webhook bodies (CONTRACT.md, "Kajabi webhook").

Hook form: {"id", "event", "created_at"?, "payload": [{"type": "contacts", "id", "attributes":
{"email", "name", ...}}, {"type": "contact_tags", "id", "attributes": {"name"}}, ...]}.
Flat form: {"event_id", "event"?, "created_at"?, "contact": {"id", "email"}, "tag": {"id", "name"}}.

Unknown keys are kept (Kajabi may add fields; the raw body is stored), but every declared field
is checked: types without coercion, lengths of the kajabi_events columns (event_id 255,
event_type 64, contact_id 64, email 320, tag 200, checked in the spelling stored: the tag trimmed and lower-cased, the e-mail normalise_email's), ids
within bigint. A tag event must name a contact (id or e-mail) and a tag.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag, model_validator

from api.schemas.common import BIGINT_MAX, fits_after, text, validate
from core.accounts.users import normalise_email
from core.platform.errors import ValidationError
from core.points import kajabi, rules

TAG_EVENTS = (kajabi.TAG_ADDED, kajabi.TAG_REMOVED)


# RFC 3339 date-time (what JSON Schema's "date-time" format means), then a real calendar date.
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
_RFC3339 = re.compile(RFC3339)


def _iso_time(value: str | None) -> str | None:
    """An RFC 3339 date-time of a real calendar date that has a UTC equivalent (the ledger stores
    UTC; 9999-12-31T23:59:59-01:00 has none)."""
    if value is not None:
        try:
            if not _RFC3339.fullmatch(value):
                raise ValueError
            moment = datetime.fromisoformat(value.upper()).astimezone(timezone.utc)
        except (ValueError, OverflowError):
            raise ValueError("must be an RFC 3339 date-time, e.g. 2024-05-01T10:00:00Z") from None
        if not rules.event_time_ok(moment, datetime.now(timezone.utc)):
            raise ValueError("must lie between 2000-01-01 and one day from now")
    return value


def _not_blank(value: str) -> str:
    if not rules.normalise_tag(value):
        raise ValueError("must not be blank")
    return value


ExternalId = Union[Annotated[int, Field(strict=True, ge=0, le=BIGINT_MAX)], text(64)]
EventId = Union[Annotated[int, Field(strict=True, ge=0, le=BIGINT_MAX)], text(255)]
# Measured in the spelling that is stored (normalise_email casefolds: one "ﬃ" becomes "ffi").
Email = Annotated[text(320), fits_after(normalise_email, 320, "longer than 320 characters once normalised")]
TagName = Annotated[text(200), fits_after(rules.normalise_tag, 200, "longer than 200 characters once lower-cased"),
                    AfterValidator(_not_blank)]
CreatedAt = Annotated[str, StringConstraints(strict=True, max_length=64, pattern=RFC3339), AfterValidator(_iso_time),
                      Field(json_schema_extra={"format": "date-time"})]
EventType = Annotated[text(64), Field(description="tag_added and tag_removed are acted on; others are stored and ignored")]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ContactAttributes(_Open):
    email: Email | None = None
    name: text(255, 0) | None = None


class TagAttributes(_Open):
    name: TagName


class ContactItem(_Open):
    type: Literal["contacts"]
    id: ExternalId | None = None
    attributes: ContactAttributes = ContactAttributes()


class TagItem(_Open):
    type: Literal["contact_tags"]
    id: ExternalId | None = None
    attributes: TagAttributes


class OtherItem(_Open):
    """Items of other types are stored as sent."""
    type: Annotated[text(64), Field(json_schema_extra={"not": {"enum": ["contacts", "contact_tags"]}})]


def _item_kind(item: Any) -> str | None:
    kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
    return kind if kind in ("contacts", "contact_tags") else "other"


Item = Annotated[Union[Annotated[ContactItem, Tag("contacts")], Annotated[TagItem, Tag("contact_tags")],
                       Annotated[OtherItem, Tag("other")]], Discriminator(_item_kind)]


class KajabiHook(_Open):
    """Kajabi's documented hook body."""
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "evt-1", "event": "tag_added", "created_at": "2024-05-01T10:00:00Z", "payload": [
            {"type": "contacts", "id": "c-100", "attributes": {"email": "known@example.com", "name": "Known Person"}},
            {"type": "contact_tags", "id": "t-1", "attributes": {"name": "elevate-ai-1-completed"}}]}]})
    id: EventId | None = None
    event: EventType
    created_at: CreatedAt | None = None
    payload: Annotated[list[Item], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _tag_event_names_contact_and_tag(self):
        if self.event.strip() in TAG_EVENTS:
            contacts = [i for i in self.payload if isinstance(i, ContactItem)]
            tags = [i for i in self.payload if isinstance(i, TagItem)]
            if len(contacts) != 1 or len(tags) != 1:
                raise ValueError("a tag event carries one contacts item and one contact_tags item")
            if contacts[0].id is None and contacts[0].attributes.email is None:
                raise ValueError("the contacts item needs an id or attributes.email")
        return self

    def parsed(self, raw: bytes) -> kajabi.ParsedEvent:
        contact = next((i for i in self.payload if isinstance(i, ContactItem)), None)
        tag = next((i for i in self.payload if isinstance(i, TagItem)), None)
        return kajabi.parsed_event(self.id, self.event, contact.id if contact else None,
                                   contact.attributes.email if contact else None,
                                   tag.attributes.name if tag else None, self.created_at, raw)


class FlatContact(_Open):
    id: ExternalId | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _names_someone(self):
        if self.id is None and self.email is None:
            raise ValueError("needs an id or an email")
        return self


class FlatTag(_Open):
    id: ExternalId | None = None
    name: TagName


class KajabiFlat(_Open):
    """The flat form (event defaults to tag_added)."""
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "event_id": "flat-1", "created_at": "2024-05-01T10:00:00Z",
        "contact": {"id": "c-100", "email": "known@example.com"}, "tag": {"id": "t-9", "name": "elevate-ai-2-completed"}}]})
    event_id: EventId | None = None
    id: EventId | None = None
    event: EventType = kajabi.TAG_ADDED
    created_at: CreatedAt | None = None
    contact: FlatContact
    tag: FlatTag

    def parsed(self, raw: bytes) -> kajabi.ParsedEvent:
        event_id = self.event_id if self.event_id is not None else self.id
        return kajabi.parsed_event(event_id, self.event, self.contact.id, self.contact.email, self.tag.name,
                                   self.created_at, raw)


def parse_body(body: Any, raw: bytes) -> kajabi.ParsedEvent:
    """A JSON value (already read by api.json_body) -> ParsedEvent, or ValidationError
    `invalid_payload` (400) naming each failing field, e.g. `payload[1].attributes.name`."""
    if not isinstance(body, dict):
        raise ValidationError("invalid_payload", "The body must be a JSON object.",
                              [{"field": "body", "issue": "not an object"}])
    if "payload" in body:
        model = validate(KajabiHook, body, "invalid_payload", "The body does not match Kajabi's hook form.", "payload")
    elif "contact" in body or "tag" in body:
        model = validate(KajabiFlat, body, "invalid_payload", "The body does not match the flat form.", "contact")
    else:
        raise ValidationError("invalid_payload", "The body is neither Kajabi's hook form nor the flat form.",
                              [{"field": "payload", "issue": "missing"}])
    return model.parsed(raw)
