"""The settings pages: ``/b24/app`` (the page Bitrix24 opens in its iframe) and its JSON API ``/b24/api/...``.

Modules: :mod:`~cloud.webapp.auth` (who is asking: the user's Bitrix24 token verified against their portal),
:mod:`~cloud.webapp.api` (one function per section), :mod:`~cloud.webapp.page` (the HTML shell),
:mod:`~cloud.webapp.i18n` (Russian and English), :mod:`~cloud.webapp.form` (the settings form, from
``CrmSettings``), :mod:`~cloud.webapp.calltrace` (what the product did for each call),
:mod:`~cloud.webapp.routes` (Chalice glue). See ``docs/settings-page.md``.
"""
