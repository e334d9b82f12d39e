"""One settings object for the whole platform, read from ``FIELDWATCH_*`` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "jwt-secret", "your-secret-key"}


class VendorApp(BaseModel):
    """Fieldwatch's registration with one vendor cloud (``FIELDWATCH_OURA__CLIENT_ID``…)."""

    client_id: str | None = None
    client_secret: str | None = None
    #: Where the vendor's authorization page and its API are (the vendor's own by
    #: default; another address for a proxy or a local stand-in).
    auth_url: str | None = None
    api_url: str | None = None
    #: Where the token (and revocation) endpoint is, for vendors that keep it on a host
    #: of its own (Google); unset: the connector's own, else ``api_url``.
    token_url: str | None = None
    #: The secret the vendor sends in ``Authorization`` with its notifications, where
    #: the subscriber is registered at the vendor by hand (Google Health's
    #: ``endpointAuthorization.secret``); unset: its notifications are refused.
    webhook_secret: str | None = None
    #: Notifications must carry the vendor's signature of their body, checked with its
    #: published public keys (Google Health); false: the secret alone is checked.
    webhook_verify_signature: bool = True
    #: Where those public keys are published (Google Health's Tink keyset); unset: the
    #: vendor's own address.
    webhook_keyset_url: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FIELDWATCH_", env_file=None, extra="ignore", env_nested_delimiter="__"
    )

    env: Literal["development", "production", "test"] = "development"
    role: Literal["all", "api", "gateway", "worker"] = Field(
        default="all",
        description="What `fieldwatch serve` runs (``core.process_roles``): everything "
        "(all), or one part of a scaled-out installation: api (HTTP, console, Socket.IO), "
        "gateway (device sessions: WebSocket, MQTT) or worker (periodic and background "
        "work); a part needs PostgreSQL, RabbitMQ and Redis (a gateway with MQTT: an "
        "external broker)",
    )
    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy/PostgreSQL URL; default: SQLite file in data_dir"
    )
    db_pool_size: int = 20
    db_pgbouncer: bool = Field(
        default=False,
        description="The database URL points at PgBouncer in transaction mode: no cached "
        "prepared statements, no session state kept between transactions",
    )
    db_echo: bool = False

    rabbitmq_url: str | None = Field(
        default=None, description="AMQP URL; when set, events go through RabbitMQ"
    )
    rabbitmq_exchange: str = "fieldwatch.events"

    redis_url: str | None = Field(
        default=None,
        description="Redis URL; when set, presence and latest values are shared through it",
    )
    redis_prefix: str = Field(
        default="fw",
        description="Namespace of this installation's Redis keys (one per installation)",
    )
    redis_pool_size: int = Field(
        default=50,
        ge=1,
        description="Redis connections per process; callers beyond them wait for one "
        "(a burst of device connections queues instead of failing)",
    )

    # MQTT. By default `fieldwatch serve` runs an embedded broker on mqtt_host:mqtt_port;
    # with mqtt_url it uses that broker instead (Mosquitto, EMQX) through shared
    # subscriptions of group mqtt_share_group.
    mqtt_embedded: bool = True
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://user:password@host:port of an external broker (mqtts:// for TLS)",
    )
    mqtt_share_group: str = "fieldwatch"
    mqtt_receive_maximum: int = Field(
        default=10000,
        ge=0,
        le=65535,
        description="With mqtt_url: speak MQTT 5 and let the broker have this many QoS 1 "
        "messages in flight to Fieldwatch (acknowledged after commit); 0 speaks MQTT 3.1.1, "
        "where the broker's own limit applies (Mosquitto: max_inflight_messages, 20)",
    )
    mqtt_client: Literal["auto", "paho", "mqtt5"] = Field(
        default="auto",
        description="The MQTT client of the gateway's broker connection: paho (MQTT 3.1.1 "
        "or 5) or mqtt5 (the mqtt5 codec on Fieldwatch's own asyncio connection; MQTT 5 "
        "only: it needs mqtt_url and mqtt_receive_maximum > 0); auto: mqtt5 where the "
        "gateway speaks MQTT 5 (the faster, measured), else paho",
    )
    mqtt_client_id: str | None = Field(
        default=None,
        description="With mqtt_url: the MQTT client id of Fieldwatch's gateway client, to "
        "which each process adds its slot (-0, -1, ...); the same after a restart, so the "
        "broker keeps its session. Default: fieldwatch- and an HMAC of the host name under "
        "the installation's secret (not guessable: keep a configured one secret too)",
    )
    mqtt_session_expiry: int = Field(
        default=86400,
        ge=0,
        le=0xFFFFFFFF,
        description="With mqtt_url (MQTT 5): seconds the broker keeps the gateway's session, "
        "and queues QoS 1 messages for it, while Fieldwatch is down; 0 ends the session with "
        "the connection (messages published meanwhile are lost)",
    )
    mqtt_batch_size: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="At most this many received MQTT messages are stored in one group "
        "commit (and acknowledged after it); per-device work is done once per batch",
    )
    mqtt_max_readings: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Readings one MQTT data message may carry (an array, several metrics); "
        "a message with more is refused whole and the device told on its errors topic",
    )
    mqtt_dynsec: bool = Field(
        default=True,
        description="With mqtt_url: manage device logins and topic rules in Mosquitto's "
        "dynamic-security plugin (the URL's user is its admin)",
    )
    mqtt_device_logins: Literal["all", "on_request"] = Field(
        default="all",
        description="Which device tokens log in to the MQTT broker: all (each one becomes a "
        "broker login with mqtt_dynsec), or on_request (only tokens created with "
        "'mqtt': true, or by a registration that asked for MQTT; the embedded broker "
        "refuses the others too)",
    )

    jwt_secret: str | None = None
    encryption_key: str | None = Field(
        default=None,
        description="Keys that encrypt vendor-cloud credentials at rest: comma-separated "
        "base64url 32-byte keys, the newest first (older ones still decrypt); default: a "
        "key generated into the data directory",
    )
    jwt_audience: str = "fieldwatch"
    jwt_issuer: str = "fieldwatch"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    admin_email: str = "admin@example.com"
    default_workspace: str = "default"

    retention_days: int = 365
    retention_interval_s: float = 3600.0
    ingest_max_bytes: int = 1024 * 1024
    ingest_max_pending: int = 200_000
    ingest_max_batch: int = 20_000
    ingest_writers: int = 2
    max_metrics_per_device: int = Field(
        default=1000,
        ge=1,
        description="Distinct metrics (series) a device may have; readings of further "
        "metric names are refused one by one, with the reason",
    )
    heartbeat_interval_s: int = 60
    device_ws_port: int | None = Field(
        default=None,
        description="A second port only for device WebSockets (same paths as on the API's "
        "port), served with less memory per connection: for large fleets",
    )
    device_ws_host: str = "127.0.0.1"
    ws_max_frame_bytes: int = 64 * 1024  # device WebSocket: limits per connection
    ws_max_errors: int = 10  # bad frames a device may send per minute
    ws_max_frames_per_s: float = 50.0
    device_rate_limit: int = Field(
        default=1000,
        ge=1,
        description="Messages a device may send per device_rate_window_s over MQTT, and "
        "uploads over HTTP with its token (bursts of up to this many); per device type and "
        "per device: PUT /device-types/{type}/rate-limit, /devices/{id}/rate-limit",
    )
    device_rate_window_s: int = Field(default=60, ge=1)
    device_max_refused: int = Field(
        default=100,
        ge=1,
        description="An MQTT device with more messages refused for its rate limit within "
        "a minute is disconnected",
    )
    offline_tolerance: float = 3.0
    presence_sweep_s: float = 5.0
    auth_cache_s: float = 2.0
    #: A device's lifecycle status on the ingest path. A change evicts it at once (in
    #: every process when the bus is shared), so this only bounds how long another
    #: process without a shared bus goes on with the old one; longer than a heartbeat
    #: interval, or every heartbeat reads the device again.
    device_cache_s: float = 300.0
    #: The cyclic garbage collector's young-generation threshold once the server runs
    #: (allocations between collections; Python's own is 700).
    gc_young_threshold: int = Field(default=50_000, ge=100)
    realtime_coalesce_ms: int = 250
    realtime_cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to open Socket.IO connections ("*" for any); '
        "default: the same origin only",
    )

    # Command ledger: resend a sent command not acknowledged within the ack timeout, up
    # to command_max_attempts sends in all, then fail it as undelivered.
    command_ack_timeout_s: float = 30.0
    command_max_attempts: int = 5
    command_sweep_s: float = 1.0

    # Firmware. Artifacts are stored content-addressed under firmware_dir (default:
    # data_dir/firmware). Downloads beyond firmware_download_concurrency wait (at most
    # firmware_download_queue_s, then 503 + Retry-After). A signed download URL lives
    # firmware_url_ttl_s. An update's state times out after the state's timeout and is
    # retried (the device resumes its download) until the update's tries are used up.
    firmware_dir: Path | None = None
    public_url: str | None = Field(
        default=None,
        description="The address devices reach Fieldwatch at, for links sent to them "
        "(firmware download URLs); default http://host:port",
    )
    firmware_max_upload_bytes: int = 256 * 1024 * 1024
    firmware_download_concurrency: int = 64
    firmware_download_queue_s: float = 10.0
    firmware_url_ttl_s: int = 900
    firmware_accel_redirect_prefix: str | None = Field(
        default=None,
        description="When set (e.g. /_firmware/), downloads answer with X-Accel-Redirect "
        "to this prefix + the blob's path and nginx sends the bytes",
    )
    firmware_timeout_acknowledge_s: float = 300.0
    firmware_timeout_download_s: float = 1800.0
    firmware_timeout_install_s: float = 900.0
    firmware_timeout_reboot_s: float = 600.0
    firmware_max_tries: int = 3
    firmware_sweep_s: float = 2.0
    firmware_poll_interval_s: int = 300
    #: How often each process's rollout engine advances the running rollouts.
    firmware_rollout_tick_s: float = 1.0

    max_import_bytes: int = 20 * 1024 * 1024
    max_import_rows: int = 100_000
    login_max_failures: int = 10
    login_failure_window_s: int = 300

    # Webhooks. webhook_allow_private lets webhooks target loopback, private, link-local
    # and other non-global addresses (SSRF protection off): only an administrator of
    # the installation should turn it on, e.g. for receivers on the same private network.
    webhook_allow_private: bool = False
    webhook_max_attempts: int = 8
    webhook_backoff_base_s: float = 5.0
    webhook_backoff_cap_s: float = 3600.0
    webhook_poll_interval_s: float = 2.0
    webhook_timeout_s: float = 10.0
    webhook_batch_size: int = 10

    # Vendor clouds (health wearables): the app registration with each, and sync defaults.
    oura: VendorApp = Field(default_factory=VendorApp)
    withings: VendorApp = Field(default_factory=VendorApp)
    google_health: VendorApp = Field(default_factory=VendorApp)
    garmin: VendorApp = Field(default_factory=VendorApp)
    oauth_state_ttl_s: int = 600
    sync_interval_minutes: int = Field(default=15, ge=1, le=7 * 24 * 60)
    sync_historical_days: int = Field(default=30, ge=0, le=3650)
    max_sync_retries: int = Field(default=3, ge=0, le=20)
    sync_timeout_s: float = 300.0
    #: The share of each vendor quota one process may use (each keeps its own budget).
    sync_budget_share: float = Field(default=1.0, gt=0, le=1)
    #: How often the sync engine looks for due and claimable runs.
    sync_tick_s: float = Field(default=5.0, gt=0)
    #: Runs one process executes at once.
    sync_concurrency: int = Field(default=4, ge=1, le=64)
    #: A running run's claim, renewed while it runs; another process takes it over once
    #: it has run out (the first process died).
    sync_lease_s: float = Field(default=60.0, ge=2)
    #: The first retry's wait; each further retry waits twice as long (at most an hour).
    sync_retry_base_s: float = Field(default=60.0, ge=0)
    #: Subscribe to the vendors' notifications (Oura webhooks, Withings Notify): they
    #: call ``public_url``, which must be reachable from the internet over HTTPS.
    vendor_webhooks: bool = False
    #: How often a process checks the subscriptions (create, renew, re-point).
    vendor_webhook_check_s: float = Field(default=300.0, gt=0)
    #: A subscription that expires is renewed this long before it does.
    vendor_webhook_renew_before_s: float = Field(default=3 * 24 * 3600.0, ge=0)
    #: A signed notification older (or newer) than this is refused (replays).
    vendor_webhook_max_age_s: float = Field(default=300.0, gt=0)
    #: Health exports uploaded in bulk (Apple Health, Health Connect): the largest upload,
    #: the most a zip's export may unpack to, and how long reading one may take.
    health_export_max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    health_export_max_unpacked_bytes: int = Field(default=16 * 1024**3, ge=1024)
    health_export_timeout_s: float = Field(default=3600.0, gt=0)
    #: A kept export (a failed run keeps it for its retry) older than this is deleted
    #: once no run of it is open (``integrations.exports.cleanup``).
    health_export_keep_hours: float = Field(default=168.0, ge=0)

    def vendor_app(self, connector: str) -> VendorApp:
        app = getattr(self, connector, None)
        return app if isinstance(app, VendorApp) else VendorApp()

    @field_validator("mqtt_client")
    @classmethod
    def _mqtt5_needs_mqtt5(cls, value: str, info: ValidationInfo) -> str:
        """The mqtt5 client speaks MQTT 5 only: refuse it where the gateway would speak
        MQTT 3.1.1 (the embedded broker, or a receive maximum of 0)."""
        if value != "mqtt5":
            return value
        data = info.data
        if not data.get("mqtt_url"):
            if data.get("mqtt_embedded"):
                raise ValueError(
                    "mqtt5 speaks MQTT 5 only and the embedded broker speaks MQTT 3.1.1: "
                    "set FIELDWATCH_MQTT_URL to an MQTT 5 broker, or use paho"
                )
        elif not data.get("mqtt_receive_maximum"):
            raise ValueError(
                "mqtt5 speaks MQTT 5 only and FIELDWATCH_MQTT_RECEIVE_MAXIMUM=0 asks for "
                "MQTT 3.1.1: set a receive maximum, or use paho"
            )
        return value

    @field_validator("jwt_secret", "encryption_key")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None

    @property
    def resolved_mqtt_client(self) -> Literal["paho", "mqtt5"]:
        """``mqtt_client``, with ``auto`` resolved: mqtt5 to an external broker spoken to
        in MQTT 5, paho to the embedded broker and in MQTT 3.1.1."""
        if self.mqtt_client != "auto":
            return self.mqtt_client
        return "mqtt5" if self.mqtt_url and self.mqtt_receive_maximum else "paho"

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def resolved_firmware_dir(self) -> Path:
        return self.firmware_dir if self.firmware_dir is not None else self.data_dir / "firmware"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fieldwatch.db').resolve()}"

    def check_production_safety(self) -> None:
        """Refuse placeholder secrets outside development."""
        secret = self.jwt_secret
        if (
            self.env != "development"
            and secret is not None
            and (secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 32)
        ):
            raise ValueError(
                "FIELDWATCH_JWT_SECRET is a placeholder or shorter than 32 characters; "
                "set a random value or leave it unset to use the generated per-install key"
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
