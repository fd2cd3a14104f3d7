"""Fixtures of the rights tests."""
import pytest

from config.tenancy import tenant_scope
from rights.models import Content, Registration


@pytest.fixture
def registered(tenant_a):
    """An image content of studio A with a confirmed registration, its title private."""
    project = tenant_a.project("Confidential pitch")
    with tenant_scope(tenant_a.organization):
        content = Content.objects.create(organization=tenant_a.organization, content_id="ABCD2345", kind="image",
                                         source="upload", title=f"{project.name} secret", sha256="a" * 64)
        # Public answers name only confirmed registrations (rights.verification.public_contents).
        Registration.objects.create(organization=tenant_a.organization, content=content, leaf="0x" + "1" * 64,
                                    status="confirmed")
        return content
