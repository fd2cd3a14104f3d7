"""The generation API's routes, included under /api/v1/ in the "api" namespace (config/urls.py)."""
from django.urls import path

from generation.api import jobs, policy, review, webhooks

urlpatterns = [
    path("jobs", jobs.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>", jobs.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", jobs.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", jobs.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/approve", jobs.JobApproveView.as_view(), name="job-approve"),
    path("jobs/<uuid:job_id>/shots/<int:number>", jobs.ShotView.as_view(), name="job-shot"),
    path("jobs/<uuid:job_id>/shots/<int:number>/regenerate", jobs.ShotRegenerateView.as_view(),
         name="job-shot-regenerate"),
    path("jobs/<uuid:job_id>/shots/<int:number>/frame", jobs.JobFrameView.as_view(), name="job-frame"),
    path("jobs/<uuid:job_id>/video", jobs.JobVideoView.as_view(), name="job-video"),
    path("jobs/<uuid:job_id>/thumbnail", jobs.JobThumbnailView.as_view(), name="job-thumbnail"),
    path("jobs/<uuid:job_id>/subtitles.srt", jobs.JobSubtitlesSrtView.as_view(), name="job-subtitles-srt"),
    path("jobs/<uuid:job_id>/subtitles.vtt", jobs.JobSubtitlesVttView.as_view(), name="job-subtitles-vtt"),
    path("jobs/<uuid:job_id>/events", jobs.JobEventsView.as_view(), name="job-events"),
    # Review and delivery (generation/api/review.py).
    path("jobs/<uuid:job_id>/versions", review.VersionListView.as_view(), name="job-versions"),
    path("jobs/<uuid:job_id>/versions/<int:version>/restore", review.VersionRestoreView.as_view(),
         name="job-version-restore"),
    path("jobs/<uuid:job_id>/versions/<int:version>/video", review.VersionVideoView.as_view(),
         name="job-version-video"),
    path("jobs/<uuid:job_id>/comments", review.CommentListView.as_view(), name="job-comments"),
    path("jobs/<uuid:job_id>/comments/<uuid:comment_id>", review.CommentView.as_view(), name="job-comment"),
    path("jobs/<uuid:job_id>/comments/<uuid:comment_id>/resolve", review.CommentResolveView.as_view(),
         name="job-comment-resolve"),
    path("jobs/<uuid:job_id>/comments/<uuid:comment_id>/reopen", review.CommentReopenView.as_view(),
         name="job-comment-reopen"),
    path("jobs/<uuid:job_id>/request-changes", review.RequestChangesView.as_view(), name="job-request-changes"),
    path("jobs/<uuid:job_id>/review", review.ReviewView.as_view(), name="job-review"),
    path("jobs/<uuid:job_id>/share-links", review.ShareLinkListView.as_view(), name="job-share-links"),
    path("share-links/<uuid:link_id>", review.ShareLinkView.as_view(), name="share-link"),
    path("share-links/<uuid:link_id>/revoke", review.ShareLinkRevokeView.as_view(), name="share-link-revoke"),
    path("share-links/<uuid:link_id>/accesses", review.ShareAccessListView.as_view(), name="share-link-accesses"),
    path("notifications", review.NotificationListView.as_view(), name="notifications"),
    path("verify/trace", review.TraceView.as_view(), name="verify-trace"),
    # An organization's webhooks and their deliveries (generation/api/webhooks.py).
    path("webhooks", webhooks.WebhookListView.as_view(), name="webhook-list"),
    path("webhooks/<uuid:webhook_id>", webhooks.WebhookDetailView.as_view(), name="webhook-detail"),
    path("webhooks/<uuid:webhook_id>/deliveries", webhooks.WebhookDeliveryListView.as_view(),
         name="webhook-deliveries"),
    # Budgets, content policy, providers and their credentials (generation/api/policy.py).
    path("generation-policy", policy.GenerationPolicyView.as_view(), name="generation-policy"),
    path("providers/<str:provider>", policy.ProviderCredentialView.as_view(), name="provider-credential"),
    path("providers/<str:provider>/test", policy.ProviderConnectionTestView.as_view(), name="provider-test"),
]
