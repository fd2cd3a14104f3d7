from django.urls import path

from accounts.portal import views

# The `accounts` namespace also holds the dashboard and the webhook pages, which config/urls.py adds.
app_name = "accounts"
urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent/", views.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path("password-reset/confirm/", views.PasswordResetConfirmView.as_view(), name="password-reset-confirm"),
    path("password-reset/done/", views.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    path("organizations/switch/", views.organization_switch, name="organization-switch"),
    path("team/", views.team, name="team"),
    path("team/invitations/", views.InvitationCreatePage.as_view(), name="team-invitation-create"),
    path("team/invitations/<uuid:invitation_id>/revoke/", views.InvitationRevokePage.as_view(),
         name="team-invitation-revoke"),
    path("team/members/<uuid:member_id>/role/", views.MemberRolePage.as_view(), name="team-member-role"),
    path("team/members/<uuid:member_id>/remove/", views.MemberRemovePage.as_view(), name="team-member-remove"),
    path("team/api-keys/", views.ApiKeyListPage.as_view(), name="team-api-keys"),
    path("team/api-keys/<uuid:api_key_id>/revoke/", views.ApiKeyRevokePage.as_view(), name="team-api-key-revoke"),
    path("team/audit/", views.audit_log, name="team-audit"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
