"""The device registry (设备管理): devices with their status, registration, credential rotation, disabling; the
alerts of devices offline or silent too long. See docs/fleet.md; the domain is edge/devices/fleet.py.

Registration and rotation answer the device's MQTT password once; the box keeps only hashes of it. Both are
keyed by the device id (a second registration of the same id is `409 device_exists`), so they take no
Idempotency-Key: a lost answer to a rotation is recovered by rotating again.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.bus.topics import device_prefix
from edge.devices import fleet
from edge.security.devices import DeviceKind
from edge.security.users import User
from edge.web.deps import DEVICE_ID_PATTERN, Deps, Reader, require
from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["devices"], responses=error_responses(401, 403, 500))

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="the device's id, also its MQTT username")]
ProfileId = Annotated[str, Field(pattern=fleet.PROFILE_PATTERN, description="firmware profile id (firmware_profiles/)")]
LocationCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="a ledger location (the room)")]
NO_STORE = {"Cache-Control": "no-store"}
WRITE_RESPONSES = error_responses(404, 422, 503)


class DeviceStatusOut(BaseModel):
    state: Literal["online", "offline"]
    since: str = Field(description="when the device entered this state")
    updated_at: str = Field(description="its last status message")
    detail: dict[str, Any] | None = Field(description="other fields of a JSON status (firmware, ip, battery ...)")


class OpenAlertOut(BaseModel):
    id: int
    state: Literal["offline", "silent"]
    since: str


class DeviceOut(BaseModel):
    id: str
    kind: str
    enabled: bool
    profile: str | None = Field(description="the firmware profile it follows")
    location: str | None = Field(description="the room it is in (a cold-room sensor's readings belong there)")
    created_at: str
    last_seen: str | None = Field(description="the last event or online status, UTC")
    credentials_rotated_at: str | None
    status: DeviceStatusOut | None = Field(description="as the device last reported it; null if it never did")
    alert: OpenAlertOut | None = Field(description="an offline or silent alert still open")


class TransitionOut(BaseModel):
    ts: str
    state: Literal["online", "offline"]


class DeviceDetailOut(DeviceOut):
    transitions: list[TransitionOut] = Field(description="the latest online/offline transitions, newest first")


class CredentialsOut(BaseModel):
    username: str = Field(description="the MQTT username: the device id")
    password: str = Field(description="shown this once; the box keeps only a hash")
    store_id: str
    mqtt_port: int
    topic_prefix: str = Field(description="everything the device publishes lives under this prefix")


class DeviceCredentialsOut(BaseModel):
    device: DeviceOut
    credentials: CredentialsOut


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=DEVICE_ID_PATTERN, examples=["pda-3"])
    kind: DeviceKind
    profile: ProfileId | None = None
    location: LocationCode | None = None


class DevicePatch(BaseModel):
    """Only the fields sent change; null clears one."""

    model_config = ConfigDict(extra="forbid")

    profile: ProfileId | None = None
    location: LocationCode | None = None


class DeviceAlertOut(BaseModel):
    id: int
    device: str
    device_kind: str
    state: Literal["offline", "silent", "back"]
    since: str = Field(description="offline/silent: when the device was last fine; back: when it went away")
    raised_at: str
    seconds: int = Field(description="how long it was (or had been) gone when the alert was raised")
    message: str
    message_en: str
    published_at: str | None = Field(description="when it went out on MQTT alert/device-offline")


def _credentials(deps: Deps, device_id: str, password: str) -> dict[str, Any]:
    store = deps.settings.store_id
    return {
        "username": device_id,
        "password": password,
        "store_id": store,
        "mqtt_port": deps.settings.mqtt_port,
        "topic_prefix": device_prefix(store, device_id),
    }


@router.get(
    "/devices", response_model=list[DeviceOut], dependencies=[require("devices:read")], summary="Devices / 设备列表"
)
def list_devices(reader: Reader) -> list[dict[str, Any]]:
    """Every device with its kind, profile, room, last seen, reported status and open alert."""
    return fleet.device_records(reader)


@router.get(
    "/devices/{device_id}",
    response_model=DeviceDetailOut,
    dependencies=[require("devices:read")],
    responses=error_responses(404, 422),
    summary="One device with its status history / 设备详情",
)
def get_device(device_id: DeviceId, reader: Reader) -> dict[str, Any]:
    return fleet.get_device_record(reader, device_id)


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceCredentialsOut,
    responses={**error_responses(404, 409, 422, 503)},
    summary="Register a device / 登记设备",
)
async def register_device(body: DeviceIn, deps: Deps, user: Annotated[User, require("devices:manage")]) -> JSONResponse:
    """Register a device and answer its MQTT credentials, once: the password is generated by the box and not
    kept in clear. `location` places a sensor in its room; `profile` names its firmware profile. Audited."""
    password = fleet.new_device_password()
    record = await deps.writer.execute(
        fleet.register_device,
        body.id,
        body.kind.value,
        password,
        user.username,
        deps.clock(),
        body.profile,
        body.location,
    )
    out = DeviceCredentialsOut.model_validate({"device": record, "credentials": _credentials(deps, body.id, password)})
    return JSONResponse(out.model_dump(mode="json"), status_code=201, headers=NO_STORE)


@router.post(
    "/devices/{device_id}/rotate",
    response_model=DeviceCredentialsOut,
    responses=WRITE_RESPONSES,
    summary="Rotate a device's credentials / 更换设备密码",
)
async def rotate_device(
    device_id: DeviceId, deps: Deps, user: Annotated[User, require("devices:manage")]
) -> JSONResponse:
    """A new password for the device, answered once. The old one is refused from the next connect on, and a
    connection still using it is closed within `fleet_check_seconds`. Audited."""
    password = fleet.new_device_password()
    record = await deps.writer.execute(fleet.rotate_credentials, device_id, password, user.username, deps.clock())
    out = DeviceCredentialsOut.model_validate(
        {"device": record, "credentials": _credentials(deps, device_id, password)}
    )
    return JSONResponse(out.model_dump(mode="json"), headers=NO_STORE)


@router.post(
    "/devices/{device_id}/disable",
    response_model=DeviceOut,
    responses=WRITE_RESPONSES,
    summary="Disable a device / 停用设备",
)
async def disable_device(
    device_id: DeviceId, deps: Deps, user: Annotated[User, require("devices:manage")]
) -> dict[str, Any]:
    """The device can no longer connect; a live connection is closed within `fleet_check_seconds` (its last
    will says offline). It raises no more alerts. Audited."""
    result: dict[str, Any] = await deps.writer.execute(fleet.set_enabled, device_id, False, user.username, deps.clock())
    return result


@router.post(
    "/devices/{device_id}/enable",
    response_model=DeviceOut,
    responses=WRITE_RESPONSES,
    summary="Enable a device again / 启用设备",
)
async def enable_device(
    device_id: DeviceId, deps: Deps, user: Annotated[User, require("devices:manage")]
) -> dict[str, Any]:
    result: dict[str, Any] = await deps.writer.execute(fleet.set_enabled, device_id, True, user.username, deps.clock())
    return result


@router.patch(
    "/devices/{device_id}",
    response_model=DeviceOut,
    responses=WRITE_RESPONSES,
    summary="Place a device in a room, or set its profile / 修改设备",
)
async def update_device(
    device_id: DeviceId, body: DevicePatch, deps: Deps, user: Annotated[User, require("devices:manage")]
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    result: dict[str, Any] = await deps.writer.execute(
        fleet.update_placement, device_id, changes, user.username, deps.clock()
    )
    return result


@router.get(
    "/device-alerts",
    response_model=list[DeviceAlertOut],
    dependencies=[require("devices:read")],
    responses=error_responses(422),
    summary="Device offline alerts / 设备离线告警",
)
def list_device_alerts(
    reader: Reader,
    device: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN, description="only this device")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Alerts newest first: offline or silent longer than allowed, and back."""
    return [alert.to_json() for alert in fleet.list_alerts(reader, device=device, limit=limit, offset=offset)]
