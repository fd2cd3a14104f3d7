from django.urls import path

from accounts.api import views

urlpatterns = [
    path("organization", views.OrganizationView.as_view(), name="organization"),
    path("members", views.MemberListView.as_view(), name="member-list"),
    path("members/<uuid:member_id>", views.MemberDetailView.as_view(), name="member-detail"),
    path("invitations", views.InvitationListView.as_view(), name="invitation-list"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("invitations/<uuid:invitation_id>", views.InvitationDetailView.as_view(), name="invitation-detail"),
    path("api-keys", views.ApiKeyListView.as_view(), name="apikey-list"),
    path("api-keys/<uuid:api_key_id>", views.ApiKeyDetailView.as_view(), name="apikey-detail"),
    path("audit-log", views.AuditLogView.as_view(), name="audit-log"),
]
