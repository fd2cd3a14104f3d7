"""Accounts endpoints: the organization, members, invitations, API keys, audit log. Thin: they
validate input, call a service or selector and shape the output."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response

from accounts import selectors, services
from accounts.api import serializers as s
from accounts.api.base import OrganizationAPIView, PublicAPIView
from accounts.api.permissions import PUBLIC
from accounts.audit import client_ip
from accounts.error_codes import AccountsErrors


class OrganizationView(OrganizationAPIView):
    required_scopes = {"GET": "org:read", "PATCH": "org:manage"}
    serializer_class = s.OrganizationOut

    @extend_schema(responses=s.OrganizationOut)
    def get(self, request):
        return Response(s.OrganizationOut(request.organization).data)

    @extend_schema(request=s.OrganizationIn, responses=s.OrganizationOut)
    def patch(self, request):
        data = s.OrganizationIn(data=request.data)
        data.is_valid(raise_exception=True)
        organization = services.organization_update(
            organization=request.organization, actor=request.actor, **data.validated_data
        )
        return Response(s.OrganizationOut(organization).data)


class MemberListView(mixins.ListModelMixin, OrganizationAPIView):
    required_scopes = {"GET": "members:read"}
    serializer_class = s.MemberOut

    def get_queryset(self):
        return selectors.member_list()

    def get(self, request):
        return self.list(request)


class MemberDetailView(OrganizationAPIView):
    required_scopes = {"GET": "members:read", "PATCH": "members:manage", "DELETE": "members:manage"}
    # 400: the role is beyond the caller's scopes (scope_not_held); 409: the last owner stays.
    error_codes = {method: (AccountsErrors.SCOPE_NOT_HELD, AccountsErrors.OWNER_REQUIRED, AccountsErrors.LAST_OWNER)
                   for method in ("PATCH", "DELETE")}
    serializer_class = s.MemberOut
    lookup_url_kwarg = "member_id"
    access = staticmethod(selectors.access_member)

    def get_queryset(self):
        return selectors.member_list()

    def get(self, request, member_id):
        return Response(s.MemberOut(self.get_object()).data)

    @extend_schema(request=s.MemberIn, responses=s.MemberOut)
    def patch(self, request, member_id):
        membership = self.get_object()
        data = s.MemberIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            membership=membership, role=data.validated_data["role"], actor=request.actor
        )
        return Response(s.MemberOut(membership).data)

    def delete(self, request, member_id):
        services.membership_remove(membership=self.get_object(), actor=request.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(mixins.ListModelMixin, OrganizationAPIView):
    required_scopes = {"GET": "members:read", "POST": "members:manage"}
    error_codes = {"POST": (AccountsErrors.SCOPE_NOT_HELD, AccountsErrors.OWNER_REQUIRED, AccountsErrors.ALREADY_MEMBER,
                            AccountsErrors.ALREADY_INVITED)}
    serializer_class = s.InvitationOut

    def get_queryset(self):
        return selectors.invitation_list()

    def get(self, request):
        return self.list(request)

    @extend_schema(request=s.InvitationIn, responses={201: s.InvitationOut})
    def post(self, request):
        data = s.InvitationIn(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, _token = services.invitation_create(
            organization=request.organization, actor=request.actor, **data.validated_data
        )
        return Response(s.InvitationOut(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(OrganizationAPIView):
    required_scopes = {"GET": "members:read", "DELETE": "members:manage"}
    error_codes = {"DELETE": (AccountsErrors.INVITATION_ACCEPTED, AccountsErrors.INVITATION_REVOKED)}  # or expired, 409
    serializer_class = s.InvitationOut
    lookup_url_kwarg = "invitation_id"
    access = staticmethod(selectors.access_invitation)

    def get_queryset(self):
        return selectors.invitation_list()

    def get(self, request, invitation_id):
        return Response(s.InvitationOut(self.get_object()).data)

    @extend_schema(description="Revoke a pending invitation.")
    def delete(self, request, invitation_id):
        services.invitation_revoke(invitation=self.get_object(), actor=request.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptView(PublicAPIView):
    """Join with an invitation's token: as the signed-in user, or by choosing a password."""

    required_scopes = {"POST": PUBLIC}
    # 401: the invited email has an account (sign in first); 403: signed in as someone else;
    # 404: unknown token; 409: already a member; 410: used or expired.
    error_codes = {"POST": (AccountsErrors.SIGN_IN_REQUIRED, AccountsErrors.INVITATION_EMAIL_MISMATCH,
                            AccountsErrors.INVITATION_NOT_FOUND, AccountsErrors.ALREADY_MEMBER,
                            AccountsErrors.INVITATION_USED, AccountsErrors.INVITATION_EXPIRED)}
    authentication_classes = [SessionAuthentication]

    @extend_schema(request=s.InvitationAcceptIn, responses={201: s.MemberOut})
    def post(self, request):
        data = s.InvitationAcceptIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.invitation_accept(user=request.user, ip=client_ip(request), **data.validated_data)
        return Response(s.MemberOut(membership).data, status=status.HTTP_201_CREATED)


class ApiKeyListView(mixins.ListModelMixin, OrganizationAPIView):
    required_scopes = {"GET": "apikeys:manage", "POST": "apikeys:manage"}
    serializer_class = s.ApiKeyOut

    def get_queryset(self):
        return selectors.api_key_list()

    def get(self, request):
        return self.list(request)

    @extend_schema(request=s.ApiKeyIn, responses={201: s.ApiKeyCreatedOut})
    def post(self, request):
        data = s.ApiKeyIn(data=request.data)
        data.is_valid(raise_exception=True)
        key, plain = services.api_key_create(
            organization=request.organization, actor=request.actor, **data.validated_data
        )
        return Response(s.ApiKeyCreatedOut(key, context={"plain_key": plain}).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(OrganizationAPIView):
    required_scopes = {"GET": "apikeys:manage", "DELETE": "apikeys:manage"}
    serializer_class = s.ApiKeyOut
    lookup_url_kwarg = "api_key_id"
    access = staticmethod(selectors.access_api_key)

    def get_queryset(self):
        return selectors.api_key_list()

    def get(self, request, api_key_id):
        return Response(s.ApiKeyOut(self.get_object()).data)

    @extend_schema(description="Revoke the key. It stays listed with its revocation time.")
    def delete(self, request, api_key_id):
        services.api_key_revoke(key=self.get_object(), actor=request.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditLogView(mixins.ListModelMixin, OrganizationAPIView):
    required_scopes = {"GET": "audit:read"}
    serializer_class = s.AuditEntryOut

    def get_queryset(self):
        filters = s.AuditFilterIn(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.audit_list(filters=filters.validated_data)

    @extend_schema(parameters=[s.AuditFilterIn])
    def get(self, request):
        return self.list(request)
