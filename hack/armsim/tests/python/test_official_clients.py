"""Microsoft's official Python management clients against armsim: the referee of its contract.

Each typed client checks every answer against the REST spec it was generated from (status
codes, long-running-operation handling, body shapes): a status it does not expect raises
HttpResponseError, a body it cannot read raises while deserializing. So these tests drive
create (begin_create...), get, list keys and delete (begin_delete...) of every curated kind,
their child resources and the resource group's resource list (paged: nextLink must be
followed) through the real clients, and fail on anything they refuse.

The simulator is the armsim binary, started here on a free port (ARMSIM_BIN, else the cargo
target directory, else `cargo build -p armsim`). It serves HTTPS with a CA of its own, so every
HTTP session trusts that CA explicitly and ignores the environment (REQUESTS_CA_BUNDLE and
proxies). Authentication is azure-identity's ClientSecretCredential with armsim as authority.
Storage accounts are backed by Azurite when ARMSIM_AZURITE_BLOB/ARMSIM_AZURITE_QUEUE are set.

Run: .local/venv/bin/python -m pytest hack/armsim/tests/python
"""

import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.eventhub import EventHubManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
from azure.mgmt.redis import RedisManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient

REPO = pathlib.Path(__file__).resolve().parents[4]
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000c1"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
LOCATION = "westeurope"
# The api-versions the operator pins (src/azure/kinds.rs); the clients send these.
API = {
    "resources": "2025-04-01",
    "storage": "2026-09-01",
    "postgres": "2025-08-01",
    "redis": "2024-11-01",
    "eventhub": "2026-01-01",
    "keyvault": "2026-02-01",
    "cognitive": "2026-09-01",
}
# Every poller waits at most this long.
LRO_TIMEOUT = 60


def _armsim_binary():
    explicit = os.environ.get("ARMSIM_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    binary = target / "debug" / "armsim"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--locked", "-p", "armsim", "--bin", "armsim"], cwd=REPO, check=True)
    return binary


class Sim:
    """A running armsim: its endpoint, the CA to trust, and an admin session."""

    def __init__(self, endpoint, ca_path):
        self.endpoint = endpoint
        self.ca = ca_path
        self.http = self.session()

    def session(self):
        """A requests session that trusts only armsim's CA and ignores the environment."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca
        return s

    def transport(self):
        """An azure-core transport over such a session (a client's connection_verify too)."""
        return RequestsTransport(session=self.session(), session_owner=True, connection_verify=self.ca)

    def admin(self, method, path, body=None):
        resp = self.http.request(method, self.endpoint + path, json=body, verify=self.ca, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def credential(self):
        return ClientSecretCredential(
            TENANT,
            "citystack-test",
            "not-a-secret",
            authority=self.endpoint,
            disable_instance_discovery=True,
            transport=self.transport(),
        )

    def client(self, cls, api_version):
        """A management client of `cls` pointed at armsim, polling quickly."""
        return cls(
            self.credential(),
            SUBSCRIPTION,
            base_url=self.endpoint,
            transport=self.transport(),
            api_version=api_version,
            polling_interval=0.2,
        )


@pytest.fixture(scope="module")
def sim():
    state = tempfile.mkdtemp(prefix="armsim-py-")
    args = [
        str(_armsim_binary()),
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state,
        "--operation-seconds",
        "0.5",
    ]
    blob, queue = os.environ.get("ARMSIM_AZURITE_BLOB"), os.environ.get("ARMSIM_AZURITE_QUEUE")
    if blob and queue:
        args += ["--azurite-blob", blob, "--azurite-queue", queue]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        prefix = "armsim listening on "
        assert line.startswith(prefix), f"armsim did not start: {line!r}"
        yield Sim(line[len(prefix):], os.path.join(state, "ca.pem"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(state, ignore_errors=True)


def unique(prefix):
    return prefix + uuid.uuid4().hex[:8]


def group(sim, name):
    rm = sim.client(ResourceManagementClient, API["resources"])
    rg = rm.resource_groups.create_or_update(name, {"location": LOCATION})
    assert rg.name == name and rg.properties.provisioning_state == "Succeeded"
    return rm


def gone(get):
    with pytest.raises(ResourceNotFoundError):
        get()


def test_resource_groups_and_the_paged_resource_list(sim):
    rg = unique("rg-py-list-")
    rm = group(sim, rg)
    assert rm.resource_groups.get(rg).location == LOCATION
    # Five top-level resources, pages of two: the pager must follow nextLink twice.
    storage = sim.client(StorageManagementClient, API["storage"])
    accounts = [unique("pylist") for _ in range(5)]
    for name in accounts:
        storage.storage_accounts.begin_create(
            rg, name, {"location": LOCATION, "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        ).result(timeout=LRO_TIMEOUT)
    sim.admin("PUT", "/_admin/settings", {"pageSize": 2})
    sim.admin("POST", "/_admin/reset-log")
    try:
        listed = [r.name for r in rm.resources.list_by_resource_group(rg)]
    finally:
        sim.admin("PUT", "/_admin/settings", {"pageSize": 1000})
    assert sorted(listed) == sorted(accounts)
    pages = [e for e in sim.admin("GET", "/_admin/requests") if e["method"] == "GET" and e["path"].endswith("/resources")]
    assert len(pages) == 3, pages
    # Deleting the group (202 + Location, polled to its 200) removes everything in it.
    rm.resource_groups.begin_delete(rg).result(timeout=LRO_TIMEOUT)
    gone(lambda: rm.resource_groups.get(rg))


def test_storage_account_container_and_queue(sim):
    rg = unique("rg-py-storage-")
    group(sim, rg)
    client = sim.client(StorageManagementClient, API["storage"])
    name = unique("pyst")
    # StorageAccounts_Create: 202 + Location, final state from the Location.
    account = client.storage_accounts.begin_create(
        rg,
        name,
        {
            "location": LOCATION,
            "sku": {"name": "Standard_LRS"},
            "kind": "StorageV2",
            "properties": {"minimumTlsVersion": "TLS1_2"},
        },
    ).result(timeout=LRO_TIMEOUT)
    assert account.name == name and account.provisioning_state == "Succeeded"
    got = client.storage_accounts.get_properties(rg, name)
    assert got.primary_endpoints.blob and got.minimum_tls_version == "TLS1_2"
    keys = client.storage_accounts.list_keys(rg, name)["keys"]
    assert [k["keyName"] for k in keys] == ["key1", "key2"] and all(k["value"] for k in keys)

    container = unique("raw-")
    created = client.blob_containers.create(rg, name, container, {"properties": {"publicAccess": "None"}})
    assert created.name == container
    assert client.blob_containers.get(rg, name, container).name == container
    queue = unique("jobs-")
    assert client.queue.create(rg, name, queue, {}).name == queue
    assert client.queue.get(rg, name, queue).name == queue
    client.queue.delete(rg, name, queue)
    gone(lambda: client.queue.get(rg, name, queue))
    client.blob_containers.delete(rg, name, container)
    gone(lambda: client.blob_containers.get(rg, name, container))

    # StorageAccounts_Delete: 200 (204 when missing), synchronous.
    client.storage_accounts.delete(rg, name)
    gone(lambda: client.storage_accounts.get_properties(rg, name))
    client.storage_accounts.delete(rg, name)


def test_postgresql_flexible_server_and_database(sim):
    rg = unique("rg-py-pg-")
    group(sim, rg)
    client = sim.client(PostgreSQLManagementClient, API["postgres"])
    name = unique("pypg-")
    # Servers_CreateOrUpdate: 202 + Azure-AsyncOperation + Location, then a final GET.
    server = client.servers.begin_create_or_update(
        rg,
        name,
        {
            "location": LOCATION,
            "sku": {"name": "Standard_B1ms", "tier": "Burstable"},
            "properties": {
                "administratorLogin": "citystack",
                "administratorLoginPassword": "Not-a-Real-Secret-1",
                "version": "16",
                "storage": {"storageSizeGB": 32},
            },
        },
    ).result(timeout=LRO_TIMEOUT)
    assert server.name == name and server.properties.state == "Ready"
    got = client.servers.get(rg, name)
    assert got.properties.fully_qualified_domain_name == f"{name}.postgres.database.azure.com"
    assert got.properties.administrator_login_password is None

    database = client.databases.begin_create(rg, name, "app", {"properties": {"charset": "UTF8"}}).result(
        timeout=LRO_TIMEOUT
    )
    assert database.name == "app"
    assert client.databases.get(rg, name, "app").properties.charset == "UTF8"
    client.databases.begin_delete(rg, name, "app").result(timeout=LRO_TIMEOUT)
    gone(lambda: client.databases.get(rg, name, "app"))

    client.servers.begin_delete(rg, name).result(timeout=LRO_TIMEOUT)
    gone(lambda: client.servers.get(rg, name))


def test_redis(sim):
    rg = unique("rg-py-redis-")
    group(sim, rg)
    client = sim.client(RedisManagementClient, API["redis"])
    name = unique("pyredis-")
    cache = client.redis.begin_create(
        rg,
        name,
        {
            "location": LOCATION,
            "sku": {"name": "Basic", "family": "C", "capacity": 0},
            "enable_non_ssl_port": False,
            "minimum_tls_version": "1.2",
        },
    ).result(timeout=LRO_TIMEOUT)
    assert cache.name == name and cache.provisioning_state == "Succeeded"
    got = client.redis.get(rg, name)
    assert got.host_name == f"{name}.redis.cache.windows.net" and got.ssl_port == 6380
    keys = client.redis.list_keys(rg, name)
    assert keys.primary_key and keys.secondary_key
    client.redis.begin_delete(rg, name).result(timeout=LRO_TIMEOUT)
    gone(lambda: client.redis.get(rg, name))


def test_event_hubs_namespace_hub_and_root_rule_keys(sim):
    rg = unique("rg-py-eh-")
    group(sim, rg)
    client = sim.client(EventHubManagementClient, API["eventhub"])
    name = unique("pyehns-")
    namespace = client.namespaces.begin_create_or_update(
        rg, name, {"location": LOCATION, "sku": {"name": "Standard", "tier": "Standard", "capacity": 1}}
    ).result(timeout=LRO_TIMEOUT)
    assert namespace.name == name and namespace.properties.provisioning_state == "Succeeded"
    assert client.namespaces.get(rg, name).properties.service_bus_endpoint.startswith(f"https://{name}.")
    # EventHubs_CreateOrUpdate: 200 only.
    hub = client.event_hubs.create_or_update(rg, name, "vehicles", {"properties": {"partitionCount": 2}})
    assert hub.name == "vehicles" and hub.properties.partition_ids == ["0", "1"]
    assert client.event_hubs.get(rg, name, "vehicles").name == "vehicles"
    keys = client.namespaces.list_keys(rg, name, "RootManageSharedAccessKey")
    assert keys.key_name == "RootManageSharedAccessKey"
    assert keys.primary_connection_string.startswith(f"Endpoint=sb://{name}.servicebus.windows.net/;")
    client.event_hubs.delete(rg, name, "vehicles")
    gone(lambda: client.event_hubs.get(rg, name, "vehicles"))
    client.namespaces.begin_delete(rg, name).result(timeout=LRO_TIMEOUT)
    gone(lambda: client.namespaces.get(rg, name))


def test_key_vault(sim):
    rg = unique("rg-py-kv-")
    group(sim, rg)
    client = sim.client(KeyVaultManagementClient, API["keyvault"])
    name = unique("pykv-")
    # Vaults_CreateOrUpdate: 201 + Location with the vault, final state from the Location.
    vault = client.vaults.begin_create_or_update(
        rg,
        name,
        {
            "location": LOCATION,
            "properties": {
                "tenantId": TENANT,
                "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": True,
                "accessPolicies": [],
            },
        },
    ).result(timeout=LRO_TIMEOUT)
    assert vault.name == name and vault.properties.provisioning_state == "Succeeded"
    assert client.vaults.get(rg, name).properties.vault_uri == f"https://{name}.vault.azure.net/"
    # Vaults_Delete: 200 (204 when missing), synchronous.
    client.vaults.delete(rg, name)
    gone(lambda: client.vaults.get(rg, name))


def test_cognitive_services_account(sim):
    rg = unique("rg-py-ai-")
    group(sim, rg)
    client = sim.client(CognitiveServicesManagementClient, API["cognitive"])
    name = unique("pyai-")
    account = client.accounts.begin_create(
        rg,
        name,
        {"location": LOCATION, "kind": "OpenAI", "sku": {"name": "S0"}, "properties": {"customSubDomainName": name}},
    ).result(timeout=LRO_TIMEOUT)
    assert account.name == name and account.properties.provisioning_state == "Succeeded"
    assert client.accounts.get(rg, name).properties.endpoint == f"https://{name}.openai.azure.com/"
    keys = client.accounts.list_keys(rg, name)
    assert keys.key1 and keys.key2
    client.accounts.begin_delete(rg, name).result(timeout=LRO_TIMEOUT)
    gone(lambda: client.accounts.get(rg, name))
