"""One typed configuration for the box: an optional TOML file plus STOREBOX_* environment variables.

Environment variables win over the file. A bad value raises ConfigError with one line naming the
setting and what is allowed, so `storebox serve` can stop with that line and nothing else.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_serializer, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "STOREBOX_"
ID_PATTERN = r"^[a-z0-9-]+$"


class ConfigError(Exception):
    """A setting is invalid; `str(err)` is one line naming the setting and what is allowed."""


class Settings(BaseSettings):
    """Every setting of the box, with defaults that work on a laptop."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(Path("./var"), description="where the database, secrets and demo.json live")
    http_host: str = Field("127.0.0.1", min_length=1, description="address the HTTP API binds to")
    http_port: int = Field(8080, ge=1, le=65535, description="TCP port of the HTTP API")
    mqtt_host: str = Field("127.0.0.1", min_length=1, description="address the embedded broker binds to")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="TCP port of the embedded MQTT broker")
    store_id: str = Field("store-001", pattern=ID_PATTERN, max_length=64, description="this store's id")
    store_name: str = Field("演示门店 Demo Store", min_length=1, max_length=100)
    timezone: str = Field("Asia/Shanghai", description="business day for expiry and reports")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL: an acked posting survives a power cut; NORMAL: survives a crash only"
    )
    ingest_batch_max: int = Field(256, ge=1, le=10000, description="events per group commit at most")
    mqtt_max_payload_bytes: int = Field(16384, ge=256, le=1048576, description="largest device event")
    allow_negative_stock: bool = Field(False, description="refuse negative stock unless true")
    token_ttl_minutes: int = Field(480, ge=1, le=10080, description="lifetime of an API bearer token")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Finance (业财一体化): chart of accounts, three-way match, supplier compliance. See docs/finance.md.
    chart: str = Field(
        "small_enterprise",
        min_length=1,
        max_length=500,
        description="chart of accounts: small_enterprise (小企业会计准则), enterprise (企业会计准则) or a JSON file",
    )
    company_name: str = Field("演示商贸有限公司 Demo Trading Co., Ltd.", min_length=1, max_length=200)
    company_credit_code: str | None = Field(
        None, description="the buyer's unified social credit code that purchase invoices must name (unset: not checked)"
    )
    match_qty_tolerance: int = Field(
        0, ge=0, le=1_000_000, description="three-way match: quantity difference allowed per line, base units"
    )
    match_price_tolerance_fen: int = Field(
        100, ge=0, le=100_000_000, description="three-way match: amount difference allowed per line, fen"
    )
    match_tax_tolerance_fen: int = Field(
        10, ge=0, le=100_000_000, description="three-way match: tax difference allowed per line, fen"
    )
    match_window_hours: int = Field(
        72, ge=1, le=24 * 366, description="an invoice must arrive within this many hours after its receipt"
    )
    po_papers_required_above_yuan: int = Field(
        50_000,
        ge=0,
        le=10**9,
        description="a PO above this gross amount (CNY) needs the supplier's papers complete and valid",
    )
    papers_max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="largest paper upload"
    )
    paper_expiry_warn_days: tuple[int, ...] = Field(
        (30, 7), description="warn this many days before a supplier paper expires"
    )

    # Devices and terminals (issue 4, docs/devices.md). Each part keeps its settings in its own block.
    # --- serial adapters and firmware profiles ---
    serial_devices: tuple[dict[str, Any], ...] = Field(
        (),
        description="serial devices bridged onto the bus, each {device, profile, port, password, mode?}"
        " (docs/firmware-profiles.md)",
    )
    firmware_profiles_dir: Path | None = Field(
        None, description="folder of firmware profiles (*.yaml); default the shipped firmware_profiles/"
    )

    @field_validator("serial_devices")
    @classmethod
    def _serial_devices(cls, value: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        from edge.devices.serial_adapter import check_serial_devices

        return check_serial_devices(value)

    @field_serializer("serial_devices", when_used="json")
    def _serial_passwords_hidden(self, value: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
        return [{**device, "password": "***"} for device in value]  # `storebox config` prints settings

    # --- barcodes and scales ---
    scale_label_formats: tuple[str, ...] = Field(
        ("2PPPPPPWWWWWC", "2PPPPPPMMMMMWWWWWC"),
        description="in-store scale label barcodes (称重条码), first match wins: a digit is a fixed flag digit,"
        " P the PLU, W the weight in grams, M the amount in fen, C the check digit (docs/barcodes.md)",
    )
    scale_weight_max_age_s: int = Field(
        120, ge=1, le=3600, description="a scan takes a scale's stable weight only when it is at most this old"
    )

    @field_validator("scale_label_formats")
    @classmethod
    def _label_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from edge.devices.barcodes import parse_label_formats

        parse_label_formats(value)  # a LabelFormatError is a ValueError: the message says what is wrong
        return value

    # --- scan-to-receive, ASNs, supplier API ---
    receiving_note_max_age_days: int = Field(
        30, ge=1, le=366, description="scan-to-receive: a delivery note issued longer ago than this is refused"
    )
    receiving_clock_skew_seconds: int = Field(
        600, ge=0, le=86400, description="scan-to-receive: how far a note's issue time may be ahead of the box's clock"
    )
    receiving_location: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="scan-to-receive: where received goods go unless the keeper names a location (unset: floor)",
    )
    asn_templates_dir: Path | None = Field(
        None, description="supplier API: extra connector templates (*.yaml); one named like a shipped one replaces it"
    )
    supplier_api_requests_per_minute: int = Field(
        60, ge=1, le=100_000, description="supplier API: requests per minute and key (a burst of as many is allowed)"
    )
    # --- fleet, device status, cold chain ---
    fleet_check_seconds: float = Field(
        10.0, ge=0.5, le=600, description="how often device alerts, cold rooms and changed credentials are checked"
    )
    device_offline_alert_seconds: int = Field(
        300, ge=0, le=7 * 86400, description="alert when a device is offline (status or last will) this long"
    )
    device_silent_alert_seconds: dict[str, int] = Field(
        default_factory=lambda: {"sensor": 900},
        description="alert when a device of these kinds sends nothing this long: kind -> seconds (JSON object)",
    )
    cold_chain_bands: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"chilled": {"min": 0.0, "max": 4.0}, "frozen": {"max": -18.0}},
        description="allowed temperatures per storage class in degrees Celsius: class -> {min, max} (JSON object)",
    )
    cold_chain_alarm_seconds: int = Field(
        900, ge=0, le=86400, description="alarm when a cold room's sensor is out of band this long"
    )
    cold_chain_raw_days: int = Field(7, ge=1, le=3650, description="days raw temperature readings are kept")
    cold_chain_minute_days: int = Field(90, ge=1, le=3650, description="days per-minute temperature rollups are kept")

    @field_validator("device_silent_alert_seconds")
    @classmethod
    def _silent_after(cls, value: dict[str, int]) -> dict[str, int]:
        from edge.security.devices import DeviceKind

        for kind, seconds in value.items():
            if kind not in DeviceKind.__members__.values():
                raise ValueError(f"unknown device kind {kind!r}: {', '.join(k.value for k in DeviceKind)}")
            if not 60 <= seconds <= 7 * 86400:
                raise ValueError(f"{kind}: 60 to 604800 seconds")
        return value

    @field_validator("cold_chain_bands")
    @classmethod
    def _bands(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        from edge.devices.cold_chain import parse_bands

        parse_bands(value)
        return value

    # --- attachments (photos, signatures) ---
    attachment_max_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024, description="largest photo or signature a terminal may send"
    )
    attachment_incomplete_hours: int = Field(
        24, ge=1, le=24 * 30, description="an attachment whose chunks are not all in after this long is refused"
    )
    attachment_max_open_per_device: int = Field(
        16, ge=1, le=1000, description="unfinished attachments a terminal may have at once"
    )
    # --- external MQTT broker ---
    mqtt_url: str | None = Field(
        None,
        description="run against this external broker (MQTT 5) instead of the embedded one:"
        " mqtt://user:password@host:1883 or mqtts://... (docs/mqtt5.md)",
    )
    mqtt_ca_file: Path | None = Field(
        None, description="PEM CA certificates an mqtts:// broker's certificate is checked against (default: system)"
    )
    mqtt_client_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
        description="the box's client id at the external broker; keeps its session (default storebox-<store_id>)",
    )

    # Replenishment and forecasting (issue 5, docs/replenishment.md). Each part keeps its settings in its own block.
    # --- replenishment: planner ---
    plan_interval_minutes: int = Field(
        15, ge=0, le=24 * 60, description="run the replenishment plan every this many minutes (0: only on demand)"
    )
    plan_first_run_delay_seconds: float = Field(
        5.0, ge=0, le=3600, description="the first plan run this long after start, in the background"
    )
    plan_trigger_check_seconds: float = Field(
        5.0, ge=0, le=3600, description="how often events (sales spikes, signals, cold rooms, returns) are checked"
    )
    plan_horizon_days: int = Field(14, ge=1, le=28, description="days the plan forecasts")
    plan_history_days: int = Field(91, ge=91, le=730, description="days of sales history the forecast reads")
    plan_notice_days: float = Field(
        3.0, ge=0, le=28, description="also suggest orders due within this many days (not only those due today)"
    )
    plan_open_po_days: int = Field(60, ge=1, le=365, description="a PO older than this no longer counts as on order")
    plan_pool: dict[str, str] = Field(
        default_factory=lambda: {"backroom": "floor"},
        description="stock and sales of a location counted for the one it feeds: location -> location (JSON)",
    )
    plan_spike_factor: float = Field(
        3.0, ge=1, le=100, description="recompute an item at once when a day's sales pass this x its forecast"
    )
    plan_spike_min_units: float = Field(10.0, ge=1, le=1e6, description="... and at least this many base units")
    plan_use_signals: bool = Field(True, description="apply outside signals to the plan (docs/signals.md)")
    # --- replenishment: forecast ---
    forecast_model: Literal["onnx", "tflite", "none"] = Field(
        "onnx",
        description="learned demand model the forecast runs: onnx (onnxruntime), tflite (LiteRT) or none"
        " (statistical methods only; docs/forecast-model.md)",
    )
    models_dir: Path | None = Field(
        None, description="directory of the demand model files (default: the shipped models/ directory)"
    )
    # --- replenishment: signals ---
    # Outside signals, lead times and return spikes (docs/signals.md); the domain reads them as SignalPolicy,
    # LeadTimePolicy and ReturnSpikePolicy (`from_settings`).
    signals_stale_days: int = Field(7, ge=1, le=90, description="a lead indicator older than this has no effect")
    signals_baseline_days: int = Field(
        28, ge=1, le=365, description="an indicator's baseline, unless given: mean of its values over this window"
    )
    signals_trend_baseline: float = Field(50.0, ge=0, lt=100, description="trend baseline when none is known")
    signals_trend_max_lift: float = Field(0.30, ge=0, le=2, description="largest demand lift of a trending score")
    signals_bounce_baseline: float = Field(0.20, ge=0, le=1, description="search bounce baseline when none is known")
    signals_bounce_coef: float = Field(1.0, ge=0, le=10, description="demand lift per unit of bounce above baseline")
    signals_bounce_max_lift: float = Field(0.20, ge=0, le=2, description="largest demand lift of search bounce")
    signals_abandon_baseline: float = Field(0.70, ge=0, le=1, description="cart abandonment baseline when none known")
    signals_abandon_coef: float = Field(0.5, ge=0, le=10, description="demand drop per unit of abandonment above it")
    signals_abandon_max_drop: float = Field(0.15, ge=0, le=0.9, description="largest demand drop of cart abandonment")
    signals_lead_factor_min: float = Field(0.80, gt=0, le=1, description="lead indicators together: lowest factor")
    signals_lead_factor_max: float = Field(1.40, ge=1, le=5, description="lead indicators together: highest factor")
    signals_promo_elasticity: float = Field(
        3.0, ge=0, le=20, description="nominal promotion lift 1 + elasticity x discount (notes; non-model forecasts)"
    )
    signals_promo_max_lift: float = Field(4.0, ge=1, le=20, description="largest nominal promotion lift")
    signals_online_window_days: int = Field(
        14, ge=1, le=90, description="online channel demand: daily rate over this many past days"
    )
    signals_online_location: str = Field(
        "floor", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="location whose series carries online channel demand"
    )
    leadtime_window_days: int = Field(180, ge=7, le=3650, description="lead times: POs of this many past days")
    leadtime_history_window_days: int = Field(
        365, ge=7, le=3650, description="lead times: imported history of this many past days"
    )
    leadtime_prior_weight: float = Field(
        5.0, ge=0, le=100, description="lead times: weight of the supplier default, in observations"
    )
    leadtime_default_days: float = Field(3.0, ge=0, le=365, description="lead time of a supplier with no default")
    leadtime_default_std_days: float = Field(1.0, ge=0, le=365, description="lead-time spread assumed by default")
    returns_recent_days: int = Field(7, ge=1, le=90, description="return spikes: the recent window")
    returns_baseline_days: int = Field(28, ge=1, le=365, description="return spikes: the baseline window before it")
    returns_min_count: int = Field(3, ge=1, le=10_000, description="return spikes: returns in the recent window")
    returns_ratio: float = Field(2.0, ge=1, le=100, description="return spikes: recent rate / baseline rate")
    returns_quality_window_days: int = Field(90, ge=7, le=3650, description="supplier quality score window")
    returns_spike_penalty: float = Field(5.0, ge=0, le=100, description="quality points per return spike")
    # --- replenishment: emergency requests ---
    emergency_max_text_chars: int = Field(
        500, ge=20, le=5000, description="longest emergency request text accepted (docs/emergency-requests.md)"
    )
    emergency_min_match_score: float = Field(
        70.0, ge=1, le=100, description="an item scoring below this (0..100) is no match for the request text"
    )
    emergency_ambiguity_margin: float = Field(
        6.0, ge=0, le=50, description="the best item must lead the next by this many points, else the user chooses"
    )
    emergency_min_shelf_life_days: int = Field(
        2, ge=0, le=3650, description="a neighbour's stock needs at least this many days of shelf life left"
    )
    emergency_min_shelf_life_share: float = Field(
        0.25, ge=0, le=1, description="... and at least this share of the item's shelf life"
    )
    emergency_peer_stock_max_age_hours: float = Field(
        48.0, gt=0, le=24 * 365, description="neighbours' stock reports older than this are not used"
    )
    # Sync with the aggregator (issue 6, docs/sync.md). Unset sync_url: the box keeps its outbox and does not sync.
    # --- sync: upload ---
    sync_url: str | None = Field(
        None, description="the aggregator's base URL, e.g. https://hq.example.com (unset: no sync)"
    )
    sync_key: SecretStr | None = Field(
        None, description="this store's key <key_id>.<secret>; <data_dir>/sync.key, when present, wins"
    )
    sync_ca_file: Path | None = Field(None, description="CA bundle for the aggregator's TLS certificate")
    sync_interval_seconds: float = Field(
        5.0, gt=0, le=3600, description="how often the box looks for outbox rows when no posting wakes it"
    )
    sync_batch_rows: int = Field(5000, ge=1, le=20_000, description="outbox rows per batch at most")
    sync_timeout_seconds: float = Field(30.0, gt=0, le=600, description="one request to the aggregator")
    sync_backoff_max_seconds: float = Field(
        300.0, ge=1, le=86_400, description="retries back off exponentially with jitter up to this"
    )
    sync_heartbeat_seconds: float = Field(
        60.0, ge=1, le=86_400, description="an idle box tells the aggregator it is alive this often"
    )
    outbox_retention_days: int = Field(
        30, ge=1, le=3650, description="acknowledged outbox rows are compacted after this many days"
    )
    # --- sync: pulls (transfers, packages) ---
    sync_pull_interval_seconds: float = Field(
        60.0, ge=1, le=86_400, description="how often the box asks for incoming transfers and new packages"
    )
    # --- sync: packages ---
    hq_public_key: str | None = Field(
        None, description="HQ's Ed25519 package signing key, 64 hex digits (unset: packages are refused)"
    )
    # --- rules: engine and actions (issue 8, docs/rules.md) ---
    rules_enabled: bool = Field(True, description="run the active rules on the box's events (false: rules only stored)")
    rules_reload_seconds: float = Field(
        5.0, gt=0, le=3600, description="how often the runtime looks for rules approved, retired or overridden"
    )
    rules_signal_check_seconds: float = Field(
        60.0, gt=0, le=86_400, description="how often signals (lead-time changes, invoices, papers) are looked for"
    )
    rules_queue_max: int = Field(
        10_000, ge=10, le=1_000_000, description="events waiting for the rules at most; beyond that dropped and counted"
    )
    rules_signal_depth_max: int = Field(
        5, ge=1, le=10, description="a signal raised by a rule raised by a signal ... at most this deep"
    )
    rule_teams: tuple[str, ...] = Field(
        (),
        description="teams a rule may notify or give a ticket to, besides the box's roles and the catalogue's"
        " (category_manager, category_team, logistics, quality, supplier_claims, finance)",
    )
    rules_lead_time_step_days: float = Field(
        1.0, gt=0, le=365, description="signal supplier.lead_time_changed when an estimate moves at least this much"
    )
    rules_delivery_seconds: float = Field(
        2.0, gt=0, le=3600, description="how often waiting notifications and e-mails are looked for"
    )
    # --- rules: e-mail (SMTP) ---
    smtp_host: str | None = Field(None, description="SMTP server of the rules' e-mail action (unset: e-mails wait)")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port (587 with STARTTLS, 465 with smtp_ssl)")
    smtp_from: str = Field("storebox@localhost", min_length=3, max_length=254, description="sender address")
    smtp_user: str | None = Field(None, description="SMTP login (unset: no login)")
    smtp_password: SecretStr | None = Field(None, description="SMTP password")
    smtp_starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    smtp_ssl: bool = Field(False, description="connect over TLS from the start (port 465)")
    smtp_timeout_seconds: float = Field(30.0, gt=0, le=600, description="one SMTP conversation at most")
    smtp_max_attempts: int = Field(
        8, ge=1, le=100, description="attempts per e-mail; after the last it stays failed, visible, until resent"
    )
    smtp_backoff_max_seconds: float = Field(
        3600.0, ge=1, le=86_400, description="retries back off exponentially (30 s, 60 s, ...) up to this"
    )
    rule_email_routes: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description='send_email `to: role:<team>`: team -> addresses (JSON object, e.g. {"finance": ["a@b.cn"]})',
    )

    @field_validator("rule_teams")
    @classmethod
    def _rule_teams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for team in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", team):
                raise ValueError(f"team {team!r}: lowercase letters, digits and _ (at most 32)")
        return tuple(dict.fromkeys(value))

    @field_validator("rule_email_routes")
    @classmethod
    def _email_routes(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for team, addresses in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", team):
                raise ValueError(f"team {team!r}: lowercase letters, digits and _ (at most 32)")
            if not addresses:
                raise ValueError(f"team {team}: at least one address")
            for address in addresses:
                if not re.fullmatch(r"[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,190}", address):
                    raise ValueError(f"team {team}: {address!r} is not an e-mail address")
        return value

    @field_serializer("smtp_password", when_used="json")
    def _smtp_password_hidden(self, value: SecretStr | None) -> str | None:
        return None if value is None else "***"

    # --- modules: host, budgets (issue 8, docs/modules.md) ---
    modules_enabled: bool = Field(True, description="run the scenario modules in force (false: stored, not run)")
    modules_dir: Path | None = Field(None, description="where local module installs live (unset: <data_dir>/modules)")
    modules_queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="events waiting per module at most; beyond that dropped and counted"
    )
    modules_timeout_seconds_max: float = Field(
        60.0, gt=0, le=600, description="cap on any module's timeout_seconds per call (wall clock)"
    )
    modules_memory_mb_max: int = Field(1024, ge=64, le=65_536, description="cap on any module's memory_mb")
    modules_cpu_seconds_max: int = Field(120, ge=1, le=3600, description="cap on any module's cpu_seconds per call")
    modules_start_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="a module's worker must load within this many seconds"
    )
    modules_refresh_seconds: float = Field(
        2.0, gt=0, le=3600, description="how often the host looks for modules installed, rolled back or switched"
    )
    modules_judge_interval_seconds: float = Field(
        3600.0, gt=0, le=86_400, description="how often due decisions are judged and KPIs measured"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # an empty STOREBOX_MQTT_URL means the embedded broker
        from edge.bus.broker_url import parse_broker_url

        parse_broker_url(value)
        return value.strip()

    @field_serializer("mqtt_url", when_used="json")
    def _broker_url_redacted(self, value: str | None) -> str | None:
        from edge.bus.broker_url import parse_broker_url

        return None if value is None else parse_broker_url(value).redacted()

    @field_validator("paper_expiry_warn_days")
    @classmethod
    def _warn_days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or len(value) > 5 or any(not 1 <= d <= 365 for d in value):
            raise ValueError("1 to 5 whole days, each 1..365, e.g. [30, 7]")
        return tuple(sorted(set(value), reverse=True))

    @field_validator("company_credit_code")
    @classmethod
    def _credit_code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from edge.finance.uscc import validate_uscc
        from edge.ledger.errors import DomainError

        try:
            return validate_uscc(value)
        except DomainError as exc:
            raise ValueError(f"a unified social credit code (18 characters, GB 32100-2015): {exc.message_en}") from exc

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("an IANA time zone such as Asia/Shanghai") from exc
        return value

    def business_date(self, now: datetime) -> date:
        """The store's business day at `now` (its time zone): expiry, reports and postings go by it."""
        from zoneinfo import ZoneInfo

        return now.astimezone(ZoneInfo(self.timezone)).date()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "storebox.db"

    @property
    def sync_key_path(self) -> Path:
        """The store key written by `storebox sync set-key` and by key rotation (mode 0600)."""
        return self.data_dir / "sync.key"

    @property
    def packages_dir(self) -> Path:
        """Installed HQ packages, one directory per version, `current` pointing at the one in use."""
        return self.data_dir / "packages"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit overrides (CLI flags, tests) first, then the environment, then the TOML file.
        return (init_settings, env_settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path}: not found / 配置文件不存在") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        reason = str(exc).replace("\n", " ")
        raise ConfigError(f"config file {path}: not valid TOML ({reason}) / 配置文件格式错误") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror}) / 配置文件无法读取") from exc
    # Accept both a flat file and one with a [storebox] table.
    table = data.get("storebox", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [storebox] must be a table / 必须是表")
    return table


def _describe(error: dict[str, Any]) -> str:
    name = ".".join(str(p) for p in error["loc"]) or "config"
    field = Settings.model_fields.get(name)
    env = f"{ENV_PREFIX}{name.upper()}"
    allowed = error["msg"]
    if error["type"] == "extra_forbidden":
        known = ", ".join(sorted(Settings.model_fields))
        return f"unknown setting {name!r} / 未知配置项; known settings: {known}"
    if field is not None and field.description:
        allowed = f"{allowed} ({field.description})"
    shown = error.get("input")
    if name == "serial_devices":  # holds device passwords: never echoed
        shown = "…"
    elif isinstance(shown, str):  # never echo a password given in a URL (mqtt_url)
        shown = re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", shown)
    return f"invalid setting {name} ({env}={shown!r}): {allowed} / 配置无效"


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults < TOML file < STOREBOX_* environment < explicit overrides."""
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    file_values = _read_toml(Path(path)) if path else {}
    env_names = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    # Values from the environment win over the file: drop file keys the environment sets.
    merged = {k: v for k, v in file_values.items() if f"{ENV_PREFIX}{str(k).upper()}" not in os.environ}
    merged.update(overrides)
    unknown_env = sorted(
        k
        for k in os.environ
        if k.startswith(ENV_PREFIX)
        and k not in env_names
        and k != f"{ENV_PREFIX}CONFIG"
        and not k.startswith(f"{ENV_PREFIX}CLOUD_")  # the aggregator's own settings
    )
    if unknown_env:
        raise ConfigError(f"unknown environment variable {unknown_env[0]} / 未知环境变量")
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(dict(exc.errors()[0]))) from exc
