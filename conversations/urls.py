from django.urls import path

from . import action_views, attachment_views, share_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("conversations/new/", views.conversation_create, name="conversation_create"),
    path("search/", views.conversation_search, name="conversation_search"),
    path("attachments/", attachment_views.attachment_upload, name="attachment_upload"),
    path(
        "attachments/<uuid:public_id>/",
        attachment_views.attachment_download,
        name="attachment_download",
    ),
    path(
        "attachments/<uuid:public_id>/remove/",
        attachment_views.attachment_remove,
        name="attachment_remove",
    ),
    path(
        "conversations/<uuid:public_id>/export.<str:kind>",
        views.conversation_export,
        name="conversation_export",
    ),
    path("conversations/sidebar/", views.conversation_sidebar, name="conversation_sidebar"),
    path("conversations/<uuid:public_id>/", views.conversation_detail, name="conversation_detail"),
    path(
        "conversations/<uuid:public_id>/rename/",
        action_views.conversation_rename,
        name="conversation_rename",
    ),
    path(
        "conversations/<uuid:public_id>/configure/",
        action_views.conversation_configure,
        name="conversation_configure",
    ),
    path(
        "conversations/<uuid:public_id>/report/",
        action_views.conversation_report,
        name="conversation_report",
    ),
    path(
        "conversations/<uuid:public_id>/flags/",
        action_views.conversation_flags,
        name="conversation_flags",
    ),
    path(
        "conversations/<uuid:public_id>/feedback/",
        action_views.answer_feedback,
        name="answer_feedback",
    ),
    path(
        "conversations/<uuid:public_id>/share/",
        share_views.share_create,
        name="share_create",
    ),
    # Anyone with the link, signed in or not; the token is the only key.
    path("share/<str:token>/", share_views.shared_conversation, name="shared_conversation"),
    path(
        "conversations/<uuid:public_id>/delete/",
        action_views.conversation_delete,
        name="conversation_delete",
    ),
]
