"""Tenants: install/reinstall/uninstall keep the CRM settings, tokens rotate under a version condition, the
application token is stored only as a hash."""

from __future__ import annotations

import pytest

from cloud.errors import UnknownTenant
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, to_item
from cloud.tenants import store
from cloud.tenants.store import Install, OAuthTokens

pytest_plugins = ["cloud_testkit"]

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"


def install(access: str = "acc-1", refresh: str = "ref-1", app_token: str = "apptok-1") -> Install:
    return Install(
        tenant=MEMBER,
        domain="acme.bitrix24.com",
        client_endpoint="https://acme.bitrix24.com/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        scope=["crm", "telephony"],
        language="en",
        application_token=app_token,
        tokens=OAuthTokens(access_token=access, refresh_token=refresh, access_expires_at=1000),
    )


def raw(rt: Runtime) -> dict[str, object]:
    return from_item(rt.dynamodb.get_item(TableName=rt.tables.tenants, Key=to_item({"tenant": MEMBER}))["Item"])


def test_install_stores_the_tenant_and_only_a_hash_of_the_application_token(rt: Runtime) -> None:
    tenant = store.save_install(rt, install())
    assert (tenant.tenant, tenant.domain, tenant.status, tenant.scope) == (
        MEMBER,
        "acme.bitrix24.com",
        "active",
        ["crm", "telephony"],
    )
    assert "apptok-1" not in str(raw(rt))
    assert store.verify_application_token(tenant, "apptok-1")
    assert not store.verify_application_token(tenant, "apptok-2")
    assert not store.verify_application_token(tenant, "")
    assert "acc-1" not in repr(store.load_tokens(rt, MEMBER)) and "apptok" not in repr(install())
    assert [t.tenant for t in store.list_active_tenants(rt)] == [MEMBER]


def test_reinstall_keeps_settings_and_uninstall_deletes_tokens(rt: Runtime) -> None:
    store.save_install(rt, install())
    rt.dynamodb.update_item(
        TableName=rt.tables.tenants,
        Key=to_item({"tenant": MEMBER}),
        UpdateExpression="SET settings = :s",
        ExpressionAttributeValues=to_item({":s": {"line": "74951234567"}}),
    )
    store.mark_uninstalled(rt, MEMBER)
    item = raw(rt)
    assert item["status"] == "uninstalled" and "access_token" not in item and "refresh_token" not in item
    assert item["settings"] == {"line": "74951234567"}
    with pytest.raises(UnknownTenant, match="reinstall"):
        store.load_tokens(rt, MEMBER)
    assert list(store.list_active_tenants(rt)) == []
    assert not store.get_tenant(rt, MEMBER).active

    tenant = store.save_install(rt, install(access="acc-2", refresh="ref-2", app_token="apptok-2"))
    assert tenant.active and tenant.uninstalled_at is None
    assert raw(rt)["settings"] == {"line": "74951234567"}
    assert store.load_tokens(rt, MEMBER).access_token == "acc-2"
    assert store.verify_application_token(tenant, "apptok-2") and not store.verify_application_token(tenant, "apptok-1")


def test_only_one_refresh_of_a_version_wins(rt: Runtime) -> None:
    store.save_install(rt, install())
    current = store.load_tokens(rt, MEMBER)
    first = OAuthTokens(access_token="acc-a", refresh_token="ref-a", access_expires_at=2000)
    second = OAuthTokens(access_token="acc-b", refresh_token="ref-b", access_expires_at=2000)
    assert store.replace_tokens(rt, MEMBER, first, current.token_version)
    assert not store.replace_tokens(rt, MEMBER, second, current.token_version)
    now = store.load_tokens(rt, MEMBER)
    assert (now.access_token, now.refresh_token, now.token_version) == ("acc-a", "ref-a", current.token_version + 1)


def test_a_refresh_racing_an_uninstall_loses(rt: Runtime) -> None:
    store.save_install(rt, install())
    version = store.load_tokens(rt, MEMBER).token_version
    store.mark_uninstalled(rt, MEMBER)
    new = OAuthTokens(access_token="acc-a", refresh_token="ref-a", access_expires_at=2000)
    assert not store.replace_tokens(rt, MEMBER, new, version)
    assert "access_token" not in raw(rt)


def test_unknown_tenants_and_bad_keys(rt: Runtime) -> None:
    with pytest.raises(UnknownTenant):
        store.get_tenant(rt, MEMBER)
    with pytest.raises(UnknownTenant):
        store.load_tokens(rt, MEMBER)
    with pytest.raises(UnknownTenant):
        store.mark_uninstalled(rt, MEMBER)
    with pytest.raises(UnknownTenant):
        store.update_endpoint(rt, MEMBER, "https://new.bitrix24.com/rest/", "new.bitrix24.com")
    with pytest.raises(ValueError):
        store.get_tenant(rt, "a#b")


def test_update_endpoint_after_a_rename(rt: Runtime) -> None:
    store.save_install(rt, install())
    store.update_endpoint(rt, MEMBER, "https://new.bitrix24.com/rest/", "new.bitrix24.com")
    tenant = store.get_tenant(rt, MEMBER)
    assert (tenant.client_endpoint, tenant.domain) == ("https://new.bitrix24.com/rest/", "new.bitrix24.com")


def test_an_item_with_only_settings_is_no_tenant(rt: Runtime) -> None:
    rt.dynamodb.update_item(
        TableName=rt.tables.tenants,
        Key=to_item({"tenant": MEMBER}),
        UpdateExpression="SET settings = :s",
        ExpressionAttributeValues=to_item({":s": {"line": "7"}}),
    )
    with pytest.raises(UnknownTenant):
        store.get_tenant(rt, MEMBER)
    with pytest.raises(UnknownTenant):
        store.mark_uninstalled(rt, MEMBER)
    with pytest.raises(UnknownTenant):
        store.update_endpoint(rt, MEMBER, "https://new.bitrix24.com/rest/", "new.bitrix24.com")
    assert store.save_install(rt, install()).active
    assert raw(rt)["settings"] == {"line": "7"}
