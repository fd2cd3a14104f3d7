"""Portal pages of jobs (the API's routes are in generation/api/urls.py)."""
from django.urls import path

from generation.portal import jobs as job_views
from generation.portal import new_job as views_new
from generation.portal import review as review_views
from generation.portal import share as share_views

app_name = "jobs"
urlpatterns = [
    # The jobs list, the new job form and its estimate (generation/portal/new_job.py).
    path("jobs/", views_new.job_list, name="job-list"),
    path("jobs/new/", views_new.job_new, name="job-new"),
    path("jobs/new/estimate", views_new.job_estimate, name="job-estimate"),
    path("jobs/voices/<str:voice>.wav", views_new.voice_preview, name="voice-preview"),
    # The job page, its live fragments, actions and files (generation/portal/jobs.py).
    path("jobs/<uuid:job_id>/", job_views.JobDetailPage.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/panel", job_views.JobPanelPage.as_view(), name="job-panel"),
    path("jobs/<uuid:job_id>/cancel", job_views.JobCancelPage.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", job_views.JobRetryPage.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/approve", job_views.JobApprovePage.as_view(), name="job-approve"),
    path("jobs/<uuid:job_id>/video", job_views.JobVideoPage.as_view(), name="job-video"),
    path("jobs/<uuid:job_id>/thumbnail", job_views.JobThumbnailPage.as_view(), name="job-thumbnail"),
    path("jobs/<uuid:job_id>/subtitles.srt", job_views.JobSubtitlesSrtPage.as_view(), name="job-subtitles-srt"),
    path("jobs/<uuid:job_id>/subtitles.vtt", job_views.JobSubtitlesVttPage.as_view(), name="job-subtitles-vtt"),
    path("jobs/<uuid:job_id>/shots/<int:number>/", job_views.ShotCardPage.as_view(), name="job-shot"),
    path("jobs/<uuid:job_id>/shots/<int:number>/edit", job_views.ShotEditPage.as_view(), name="job-shot-edit"),
    path("jobs/<uuid:job_id>/shots/<int:number>/regenerate", job_views.ShotRegeneratePage.as_view(),
         name="job-shot-regenerate"),
    path("jobs/<uuid:job_id>/shots/<int:number>/frame", job_views.ShotFramePage.as_view(), name="job-frame"),
    # Review and delivery of a job (generation/portal/review.py).
    path("jobs/<uuid:job_id>/comments", review_views.CommentPage.as_view(), name="job-comment"),
    path("jobs/<uuid:job_id>/comments/<uuid:comment_id>/resolve", review_views.CommentResolvePage.as_view(),
         name="job-comment-resolve"),
    path("jobs/<uuid:job_id>/comments/<uuid:comment_id>/reopen", review_views.CommentReopenPage.as_view(),
         name="job-comment-reopen"),
    path("jobs/<uuid:job_id>/request-changes", review_views.RequestChangesPage.as_view(), name="job-request-changes"),
    path("jobs/<uuid:job_id>/versions/<int:version>/restore", review_views.VersionRestorePage.as_view(),
         name="job-version-restore"),
    path("jobs/<uuid:job_id>/versions/<int:version>/video", review_views.VersionVideoPage.as_view(),
         name="job-version-video"),
    path("jobs/<uuid:job_id>/share-links", review_views.ShareLinkCreatePage.as_view(), name="job-share-create"),
    path("jobs/<uuid:job_id>/share-links/<uuid:link_id>/", review_views.ShareLinkLogPage.as_view(),
         name="job-share-log"),
    path("jobs/<uuid:job_id>/share-links/<uuid:link_id>/revoke", review_views.ShareLinkRevokePage.as_view(),
         name="job-share-revoke"),
    path("notifications/", review_views.notifications, name="notifications"),
    # A share link's pages, for people without an account (generation/portal/share.py).
    path("s/<str:share_token>/", share_views.SharePage.as_view(), name="share-page"),
    path("s/<str:share_token>/video", share_views.ShareVideoPage.as_view(), name="share-video"),
    path("s/<str:share_token>/comments", share_views.ShareCommentPage.as_view(), name="share-comment"),
]
